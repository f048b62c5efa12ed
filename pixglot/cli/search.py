"""`pixglot search`: ranked images of a collection for a text (any language), an image, or both."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime

from ground.paths import printable, write_paths
from pixglot.cli import add_database_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search an indexed collection by text and/or image",
        description='Search a collection. Negative terms push matches down: "beach -people", '
        '"beach -people:0.8 -\\"red car\\"" (weight after the colon, default 0.5).',
    )
    parser.add_argument("query", nargs="?", default="", help="text query, in any language")
    parser.add_argument("-c", "--collection", required=True, help="collection to search")
    parser.add_argument("--image", metavar="PATH", help="an image to search with (alone or with the text)")
    parser.add_argument(
        "--image-weight",
        type=float,
        default=0.5,
        metavar="W",
        help="weight of --image against the text (0-1)",
    )
    parser.add_argument("-k", "--k", type=int, default=10, metavar="N", help="hits per page (default 10)")
    parser.add_argument("--offset", type=int, default=0, metavar="N", help="skip the first N hits (paging)")
    parser.add_argument("--min-score", type=float, metavar="S", help="only hits scoring at least S")
    parser.add_argument(
        "--under", metavar="PREFIX", help="only paths starting with PREFIX (a folder: end it in /)"
    )
    parser.add_argument(
        "--from", dest="date_from", metavar="DATE", help="taken on or after DATE (YYYY-MM-DD)"
    )
    parser.add_argument("--to", dest="date_to", metavar="DATE", help="taken on or before DATE (YYYY-MM-DD)")
    parser.add_argument("--camera", metavar="TEXT", help="only images from a camera whose name contains TEXT")
    parser.add_argument("-m", "--model", help="model to query with (must be the collection's)")
    add_database_option(parser)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="hits as JSON, with their metadata")
    output.add_argument("-f", "--files", action="store_true", help="paths only, one per line (for piping)")
    output.add_argument(
        "-0", "--null", action="store_true", help="paths only, each ending in a NUL byte (for xargs -0)"
    )
    parser.set_defaults(func=run)


def parse_when(value: str | None, option: str) -> date | datetime | None:
    from ground.errors import InputError

    if not value:
        return None
    try:
        return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{option} {value!r}: expected a date as YYYY-MM-DD (or YYYY-MM-DDTHH:MM)") from None


def run(args: argparse.Namespace) -> int:
    import indexer
    from ground.errors import InputError

    if not args.query and not args.image:
        raise InputError("give a text query, --image PATH, or both")
    filters = indexer.Filters(
        path_prefix=args.under,
        date_from=parse_when(args.date_from, "--from"),
        date_to=parse_when(args.date_to, "--to"),
        camera=args.camera,
    )
    hits = indexer.open_collection(args.collection, args.db).search(
        args.query or None,
        args.image,
        k=args.k,
        offset=args.offset,
        min_score=args.min_score,
        filters=filters,
        image_weight=args.image_weight,
        model=args.model,
    )
    if args.json:
        print(json.dumps([hit.to_json() for hit in hits], ensure_ascii=False, indent=2))
    elif args.files or args.null:
        write_paths((hit.path for hit in hits), b"\0" if args.null else b"\n")
    else:
        for rank, hit in enumerate(hits, start=args.offset + 1):
            print(f"{rank:>4}  {hit.score:7.4f}  {printable(hit.path)}")
    return 0
