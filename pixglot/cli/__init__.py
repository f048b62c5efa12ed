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
import warnings
from collections.abc import Sequence
from typing import TextIO

from ground.errors import PixglotError, PixglotWarning
from pixglot import __version__


def add_database_option(parser: argparse.ArgumentParser) -> None:
    """`--db URL`, the same for every command that reads or writes the database."""
    parser.add_argument(
        "--db", metavar="URL", help="SQLAlchemy database URL (default: SQLite in PIXGLOT_HOME)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixglot", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pixglot {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}").register(subparsers)
    return parser


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Pixglot's own warnings as one line each, like its errors; others as Python shows them."""
    if issubclass(category, PixglotWarning):
        print(f"pixglot: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", PixglotWarning)
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except PixglotError as err:
        # Errors we expect (bad input, missing files) get one clear line, not a stack trace.
        print(f"pixglot: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
