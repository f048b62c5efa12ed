"""`pixglot data`: get Crossmodal-3600, build Emoji-36 offline, export training shards."""

from __future__ import annotations

import argparse
import sys


def _codes(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [code for value in values for code in value.split(",") if code]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="benchmark datasets", description=__doc__.splitlines()[0])
    datasets = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)

    xm = datasets.add_parser("xm3600", help="Crossmodal-3600 (3600 images, captions in 36 languages)")
    xm_sub = xm.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = xm_sub.add_parser("download", help="download and unpack; run again to resume")
    p.add_argument("dir", nargs="?", metavar="DIR", help="target (default: PIXGLOT_HOME/datasets/xm3600)")
    p.add_argument("--captions-url", help="URL of captions.zip (also PIXGLOT_XM3600_CAPTIONS_URL)")
    p.add_argument("--images-url", help="URL of images.tgz (also PIXGLOT_XM3600_IMAGES_URL)")
    p.add_argument("--captions-only", action="store_true", help="skip the images archive")
    p.add_argument(
        "--keep-archives", action="store_true", help="keep the downloaded archives after unpacking"
    )
    p.set_defaults(func=_xm3600_download)

    em = datasets.add_parser("emoji36", help="Emoji-36, built offline from Noto Color Emoji and CLDR")
    em_sub = em.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = em_sub.add_parser("build", help="build the dataset (images, captions.jsonl, splits.json, DATASET.md)")
    p.add_argument("dir", nargs="?", metavar="DIR", help="target (default: PIXGLOT_HOME/datasets/emoji36)")
    p.add_argument("--languages", nargs="+", metavar="CODE", help="XM3600 codes (default: all 36)")
    p.add_argument(
        "--only", nargs="+", metavar="EMOJI", help="only these emoji (characters or keys like u1f431)"
    )
    p.add_argument("--limit", type=int, help="at most this many emoji")
    p.add_argument("--font", help="colour bitmap emoji font (default: Noto Color Emoji)")
    p.add_argument("--cldr", metavar="DIR", help="CLDR 'common' directory (default: the system's)")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.set_defaults(func=_emoji36_build)

    p = em_sub.add_parser(
        "export-parquet", help="training shards: key, image, text, language; one row per caption"
    )
    p.add_argument("dir", nargs="?", metavar="DIR", help="dataset (default: PIXGLOT_HOME/datasets/emoji36)")
    p.add_argument("--out", required=True, metavar="SHARDS_DIR")
    p.add_argument("--split", choices=("train", "test", "all"), default="train")
    p.add_argument("--languages", nargs="+", metavar="CODE")
    p.add_argument("--rows-per-shard", type=int, default=10_000)
    p.set_defaults(func=_emoji36_export)


def _xm3600_download(args: argparse.Namespace) -> int:
    from data import xm3600

    result = xm3600.download(
        args.dir,
        captions_url=args.captions_url,
        images_url=args.images_url,
        images=not args.captions_only,
        keep_archives=args.keep_archives,
        progress=sys.stderr.isatty(),
    )
    done = ", ".join(result.fetched) if result.fetched else "nothing (already complete)"
    print(f"XM3600 in {result.directory}: downloaded {done}")
    return 0


def _emoji36_build(args: argparse.Namespace) -> int:
    from data import emoji36
    from data.xm3600 import LANGUAGES

    summary = emoji36.build(
        args.dir,
        languages=_codes(args.languages) or LANGUAGES,
        only=args.only,
        limit=args.limit,
        font_path=args.font,
        cldr_dir=args.cldr,
        test_fraction=args.test_fraction,
        progress=sys.stderr.isatty(),
    )
    print(
        f"Emoji-36 in {summary.directory}: {summary.emoji} emoji (train {summary.splits['train']}, "
        f"test {summary.splits['test']}), {summary.captions} captions in {len(summary.per_language)} "
        f"languages, {summary.seconds:.1f} s"
    )
    if summary.missing_languages:
        print(
            f"pixglot: warning: no CLDR annotations for {', '.join(summary.missing_languages)}; left out",
            file=sys.stderr,
        )
    return 0


def _emoji36_export(args: argparse.Namespace) -> int:
    from data import emoji36
    from data.shards import export_parquet

    summary = export_parquet(
        args.dir or emoji36.default_directory(),
        args.out,
        split=args.split,
        languages=_codes(args.languages),
        rows_per_shard=args.rows_per_shard,
    )
    print(
        f"{summary.rows} rows ({summary.images} images, {len(summary.languages)} languages) "
        f"in {len(summary.shards)} shard(s) under {args.out}"
    )
    return 0
