"""`pixglot render`: draw a text exactly as a model reads it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from rendering import STYLES, get_renderer


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("render", help="render a text to a PNG, as the model sees it")
    parser.add_argument("text")
    parser.add_argument("--style", choices=STYLES, default="shaped")
    parser.add_argument(
        "--language", help="BCP 47 code, e.g. ja or zh-Hant (shaped style: picks the CJK face)"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--report", action="store_true", help="print what could not be drawn, as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    renderer = get_renderer(args.style)
    if args.language and args.style == "shaped":
        rendering = renderer.render_with_report(args.text, args.language)
    else:
        rendering = renderer.render_with_report(args.text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rendering.image).save(args.output)
    if args.report:
        print(json.dumps(rendering.report.as_dict(), ensure_ascii=False))
    return 0
