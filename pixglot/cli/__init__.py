"""The `pixglot` command: a thin layer over the Python API.

Each module in this package is one family of subcommands and defines
`register(subparsers) -> None`, which adds its parsers and sets `func` to a callable taking the
parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from pixglot import __version__
from pixglot.errors import PixglotError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixglot", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pixglot {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PixglotError as err:
        # Errors we expect (bad input, missing files) get one clear line, not a stack trace.
        print(f"pixglot: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
