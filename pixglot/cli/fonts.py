"""`pixglot fonts doctor`: which font serves each language, and whether the stack covers it."""

from __future__ import annotations

import argparse
import json

from rendering import doctor


def register(subparsers: argparse._SubParsersAction) -> None:
    fonts = subparsers.add_parser("fonts", help="inspect the font stack of the shaped renderer")
    sub = fonts.add_subparsers(dest="fonts_command", required=True)
    check = sub.add_parser("doctor", help="check that every Crossmodal-3600 language is fully covered")
    check.add_argument("--json", action="store_true", help="print the full report as JSON")
    check.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    result = doctor.report()
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        for check in result["languages"]:
            status = (
                "ok"
                if check["covered"] and not check["truncated"]
                else "MISSING " + " ".join(check["missing"])
            )
            print(f"{check['language']:4} {status:8} {', '.join(check['fonts'])}")
        for font in result["fonts"]:
            if font.get("missing"):
                print(
                    f"warning: font file {font['file']} not found (install fonts-noto-core / fonts-noto-cjk)"
                )
        print("all languages covered" if result["ok"] else "some languages are NOT covered")
    return 0 if result["ok"] else 1
