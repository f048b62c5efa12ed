"""`pixglot data`: get Crossmodal-3600, COCO-35L and CC3M-35L, build Emoji-36, export training shards."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from data.pair_shards import BuildSummary
    from data.translated_captions import ParseSummary


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

    _register_coco35l(datasets)
    _register_cc3m35l(datasets)


def _add_download(sub: argparse._SubParsersAction, name: str, sizes: str) -> None:
    p = sub.add_parser("download", help=f"download the translated captions ({sizes}); run again to resume")
    p.add_argument("dir", nargs="?", metavar="DIR", help=f"target (default: PIXGLOT_HOME/datasets/{name})")
    p.add_argument("--split", choices=("train", "dev", "all"), default="all")
    p.add_argument(
        "--base-url",
        metavar="URL",
        help="where the files are (default: Crossmodal-3600's bucket; also PIXGLOT_TRANSLATED_CAPTIONS_URL)",
    )
    p.set_defaults(func=_translated_download, name=name)


def _add_prepare_options(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("dir", nargs="?", metavar="DIR", help=f"dataset (default: PIXGLOT_HOME/datasets/{name})")
    p.add_argument("--out", required=True, metavar="SHARDS_DIR", help="where the training shards go")
    p.add_argument("--split", choices=("train", "dev"), default="train")
    p.add_argument("--languages", nargs="+", metavar="CODE", help="only these (default: all 35)")
    p.add_argument("--rows-per-shard", type=int, default=10_000)


def _register_coco35l(datasets: argparse._SubParsersAction) -> None:
    coco = datasets.add_parser("coco35l", help="COCO-35L (COCO captions machine-translated, 35 languages)")
    sub = coco.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_download(sub, "coco35l", "train 567 MB, dev 25 MB")
    p = sub.add_parser(
        "prepare", help="training shards over your COCO images (key, image, text, language, source)"
    )
    _add_prepare_options(p, "coco35l")
    p.add_argument(
        "--coco-dir",
        required=True,
        metavar="DIR",
        help="your COCO images: a folder with train2014/ and val2014/ (or train2017/ and val2017/)",
    )
    p.set_defaults(func=_coco35l_prepare)


def _register_cc3m35l(datasets: argparse._SubParsersAction) -> None:
    cc3m = datasets.add_parser("cc3m35l", help="CC3M-35L (CC3M captions machine-translated, 35 languages)")
    sub = cc3m.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_download(sub, "cc3m35l", "train 7 GB, dev 33 MB")
    p = sub.add_parser("prepare", help="fetch the images from the web, then write training shards")
    _add_prepare_options(p, "cc3m35l")
    p.add_argument(
        "--cc3m-tsv",
        metavar="FILE",
        help="CC3M's TSV of the split (Train_GCC-training.tsv or Validation_GCC-1.1.0-Validation.tsv)",
    )
    p.add_argument("--no-fetch", action="store_true", help="use only the images fetched before")
    p.add_argument("--workers", type=int, default=4, help="requests at a time (at most 8; default 4)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    p.set_defaults(func=_cc3m35l_prepare)


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


def _translated_download(args: argparse.Namespace) -> int:
    from data import translated_captions

    result = translated_captions.download(
        args.name,
        args.dir,
        splits=translated_captions.SPLITS if args.split == "all" else (args.split,),
        base_url=args.base_url,
        progress=sys.stderr.isatty(),
    )
    done = ", ".join(result.fetched) if result.fetched else "nothing (already complete)"
    print(f"{args.name} in {result.directory}: downloaded {done}")
    return 0


def _print_parse(summary: ParseSummary) -> None:
    reused = f", {summary.reused} reused" if summary.reused else ""
    print(
        f"{summary.source.name}: {summary.lines} lines, {summary.rows} captions in "
        f"{len(summary.per_language)} languages, {summary.empty} empty left out "
        f"({len(summary.shards)} caption shard(s){reused})"
    )


def _print_build(summary: BuildSummary, out: str) -> None:
    reused = f", {summary.reused} reused" if summary.reused else ""
    print(
        f"{summary.rows} rows ({summary.images} images, {len(summary.languages)} languages) in "
        f"{len(summary.shards)} shard(s) under {out}{reused}; images not found: "
        f"{summary.missing_images} ({summary.missing_rows} captions left out)"
    )


def _coco35l_prepare(args: argparse.Namespace) -> int:
    from data import coco35l

    summary = coco35l.prepare(
        args.dir,
        coco_dir=args.coco_dir,
        out=args.out,
        split=args.split,
        languages=_codes(args.languages),
        rows_per_shard=args.rows_per_shard,
        progress=sys.stderr.isatty(),
    )
    _print_parse(summary.parse)
    _print_build(summary.build, args.out)
    return 0


def _cc3m35l_prepare(args: argparse.Namespace) -> int:
    from data import cc3m35l

    summary = cc3m35l.prepare(
        args.dir,
        out=args.out,
        tsv=args.cc3m_tsv,
        split=args.split,
        languages=_codes(args.languages),
        fetch=not args.no_fetch,
        workers=args.workers,
        timeout=args.timeout,
        rows_per_shard=args.rows_per_shard,
        progress=sys.stderr.isatty(),
    )
    _print_parse(summary.parse)
    if summary.fetch is not None:
        fetched = summary.fetch
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(fetched.failed.items()))
        print(
            f"images: {fetched.fetched} fetched, {fetched.present} already there, "
            f"{fetched.failures} failed{f' ({reasons})' if reasons else ''}, "
            f"{fetched.failed_before} failed in an earlier run (not asked again)"
        )
    _print_build(summary.build, args.out)
    return 0
