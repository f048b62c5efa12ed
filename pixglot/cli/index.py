"""`pixglot index`: index folders of images into a collection, and look after collections."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pixglot.cli import add_database_option

if TYPE_CHECKING:
    from indexer import IndexOptions

ACTIONS = ("rebuild", "reindex", "list", "drop")

USAGE_EPILOG = """
actions (instead of folders):
  pixglot index rebuild --collection NAME            rebuild the search index from the vector shards
  pixglot index reindex --collection NAME --model M  re-encode every image with model M and switch to it
  pixglot index list                                 list collections
  pixglot index drop --collection NAME               delete a collection (its rows, vectors and index)
  pixglot index --report --collection NAME           list the files the last runs could not read
A folder named like an action is given as ./NAME.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "index",
        help="index folders of images into a collection (incremental; safe to interrupt)",
        description="Index the images under PATH... into a collection. Rerunning only processes new "
        "and changed files; a run killed at any moment resumes where it stopped.",
        epilog=USAGE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="folders or image files (or an action)")
    parser.add_argument("-c", "--collection", help="collection name (letters, digits, . _ -)")
    parser.add_argument("-m", "--model", help="model name or directory (a new collection: default 'demo')")
    add_database_option(parser)
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip files or folders whose name or relative path matches (repeatable)",
    )
    parser.add_argument("--prune", action="store_true", help="drop images that vanished from under PATH")
    parser.add_argument("--report", action="store_true", help="list the files that could not be indexed")
    parser.add_argument(
        "-0", "--null", action="store_true", help="with --report: the paths only, each ending in a NUL byte"
    )
    parser.add_argument(
        "--reindex", action="store_true", help="re-encode the collection with --model (same as `reindex`)"
    )
    parser.add_argument("--batch-size", type=int, metavar="N", help="images per model call")
    parser.add_argument(
        "--commit-every", type=int, default=256, metavar="N", help="images per committed step (default 256)"
    )
    parser.add_argument("--workers", type=int, metavar="N", help="decoding processes (default: one per core)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="read, decode and encode on the Ray cluster at ADDRESS (without one: a new Ray instance on "
        "this machine); every node must see the files at the same paths (pip install -e .[ray])",
    )
    parser.set_defaults(func=run)


def _options(args: argparse.Namespace) -> IndexOptions:
    from indexer import IndexOptions

    return IndexOptions(
        batch_size=args.batch_size,
        commit_every=args.commit_every,
        workers=args.workers,
        exclude=tuple(args.exclude),
        prune=args.prune,
        progress=not args.quiet and sys.stderr.isatty(),
        ray=args.ray,
    )


def _need_collection(args: argparse.Namespace, what: str) -> str:
    from ground.errors import InputError

    if not args.collection:
        raise InputError(f"{what} needs --collection NAME")
    return args.collection


def run(args: argparse.Namespace) -> int:
    import indexer
    from ground.errors import InputError

    action = args.paths[0] if args.paths and args.paths[0] in ACTIONS else None
    if args.null and not args.report:
        raise InputError("-0/--null changes what --report prints; give it with --report")
    if args.reindex:
        if action or args.paths:
            raise InputError("--reindex re-encodes the indexed images; give no folders with it")
        action = "reindex"
    if action == "list":
        return _list(args)
    if action is not None and len(args.paths) > 1:
        raise InputError(f"`pixglot index {action}` takes no folders (a folder named {action!r}: ./{action})")
    if action == "rebuild":
        collection = indexer.rebuild(_need_collection(args, "rebuild"), args.db)
        state = collection.vector_index().state
        print(f"{collection.name}: index rebuilt, {state.live} vectors, {state.layout.summary}")
        return 0
    if action == "reindex":
        if not args.model:
            raise InputError("reindex needs --model NAME (the model to switch the collection to)")
        report = indexer.reindex(_need_collection(args, "reindex"), args.model, args.db, _options(args))
        print(report.summary(), file=sys.stderr if args.null else sys.stdout)
        return _print_failures(report.collection, args) if args.report else 0
    if action == "drop":
        indexer.open_collection(_need_collection(args, "drop"), args.db).drop()
        print(f"{args.collection}: deleted")
        return 0
    name = _need_collection(args, "indexing")
    if not args.paths:
        if args.report:
            return _print_failures(name, args)
        raise InputError("give the folders to index (or --report to list failures)")
    report = indexer.index_paths(args.paths, name, args.model, args.db, _options(args))
    # With -0 standard output carries only the NUL-separated paths.
    print(report.summary(), file=sys.stderr if args.null else sys.stdout)
    if args.report:
        return _print_failures(name, args)
    if report.failures:
        print(f"{len(report.failures)} files could not be read; `--report` lists them", file=sys.stderr)
    return 0


def _print_failures(name: str, args: argparse.Namespace) -> int:
    import indexer
    from ground.paths import printable, write_paths

    failures = indexer.open_collection(name, args.db).failures()
    if args.null:
        write_paths((failure.path for failure in failures), b"\0")
    else:
        for failure in failures:
            print(f"{printable(failure.path)}\t{failure.reason}")
    print(f"{name}: {len(failures)} files could not be indexed", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    import indexer

    for collection in indexer.list_collections(args.db):
        print(f"{collection.name}\t{collection.count()} images\tmodel {collection.model}")
    return 0
