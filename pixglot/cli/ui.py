"""`pixglot ui`: the web page for searching collections, served on this machine only unless told otherwise."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path
from typing import NoReturn

from pixglot.cli import add_database_option

DEFAULT_PORT = 8501
LOCALHOST = "127.0.0.1"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ui",
        help="the web page: search collections by text in any language or by image",
        description="Serve the Pixglot web page (Streamlit). It listens on 127.0.0.1 only, so other "
        "machines cannot reach it, unless --host names another address.",
    )
    parser.add_argument("-c", "--collection", help="the collection to show first")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--host",
        default=LOCALHOST,
        help="address to listen on (default 127.0.0.1; 0.0.0.0 serves every network this machine is on)",
    )
    add_database_option(parser)
    parser.set_defaults(func=run)


def streamlit_command(args: argparse.Namespace) -> list[str]:
    """The `python -m streamlit run` command line that serves the page for `args`."""
    import app
    from app.query import MAX_UPLOAD_MB

    script = Path(app.__file__).resolve().parent / "main.py"
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        f"--server.address={args.host}",
        f"--server.port={args.port}",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
        f"--server.maxUploadSize={MAX_UPLOAD_MB}",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--client.toolbarMode=minimal",
        "--global.developmentMode=false",
        "--",
    ]
    if args.collection:
        command += ["--collection", args.collection]
    if args.db:
        command += ["--db", args.db]
    return command


def prepare_first_collection(args: argparse.Namespace) -> None:
    """Warm up the collection the page shows first, before serving it. A first start compiles the
    renderer's code into numba's cache (seconds to a minute), which the server then loads in a moment;
    without this the page's first query would wait for the compiler. A named collection that cannot
    be opened or searched is an error now rather than on the page; any other only a warning."""
    import indexer
    from ground.errors import PixglotError

    if args.collection:
        collections = [indexer.open_collection(args.collection, args.db)]
    else:
        collections = [c for c in indexer.list_collections(args.db) if c.count()][:1]
    for collection in collections:
        name = collection.name
        print(f"pixglot: preparing collection {name!r} (model {collection.model})", file=sys.stderr)
        try:
            indexer.warm_up(collection)
        except PixglotError as err:
            if args.collection:
                raise
            print(f"pixglot: warning: collection {name!r} cannot be searched: {err}", file=sys.stderr)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args: argparse.Namespace) -> NoReturn:
    from ground.errors import InputError

    if not 1 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: must be between 1 and 65535")
    prepare_first_collection(args)
    if not _is_loopback(args.host):
        print(
            f"pixglot: serving on {args.host}: anyone who can reach this machine there can search and "
            "see the indexed images",
            file=sys.stderr,
        )
    sys.stdout.flush()
    sys.stderr.flush()
    # Streamlit becomes this process (execv does not return): stopping `pixglot ui` stops the server.
    command = streamlit_command(args)
    os.execv(command[0], command)
