"""`pixglot demo`: build Emoji-36, index it with the shipped model, and serve the web page."""

from __future__ import annotations

import argparse

from pixglot import demo
from pixglot.cli import ui


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="index the Emoji-36 demo collection with the shipped model and start the web page"
    )
    parser.add_argument("--port", type=int, default=ui.DEFAULT_PORT)
    parser.add_argument("--no-ui", action="store_true", help="prepare the collection only")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    images = demo.prepare()
    print(f"demo collection {demo.COLLECTION!r}: {images}")
    if args.no_ui:
        return 0
    examples = "猫, gato (cat) or флаг, علم (flag)"
    print(f"Pixglot demo: open http://127.0.0.1:{args.port}/ and search, e.g. {examples}")
    return ui.run(argparse.Namespace(collection=demo.COLLECTION, port=args.port, host=ui.LOCALHOST, db=None))
