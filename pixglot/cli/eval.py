"""`pixglot eval`: retrieval benchmarks (XM3600, Emoji-36), metrics of saved embeddings, and past runs."""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evaluation.metrics import CAPTION_PROTOCOLS, PROTOCOLS
from ground.errors import FileFormatError
from pixglot.cli import add_database_option

if TYPE_CHECKING:
    from sqlalchemy import Engine


def _languages(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [code for value in values for code in value.split(",") if code]


def _add_benchmark(
    subparsers: argparse._SubParsersAction,
    name: str,
    help_text: str,
    default_dir: str,
    default_split: str | None,
) -> None:
    p = subparsers.add_parser(name, help=help_text, description=help_text)
    p.add_argument(
        "--data", metavar="DIR", help=f"dataset directory (default: PIXGLOT_HOME/datasets/{default_dir})"
    )
    p.add_argument("--model", required=True, help="model name (in PIXGLOT_HOME/models) or model directory")
    p.add_argument("--languages", nargs="+", metavar="CODE", help="language codes (default: all in the data)")
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="all",
        help="all: every caption (big_vision); first: first caption per image (CLIP_benchmark); "
        "words: each word of the word-list captions as a one-word query (Emoji-36's keywords)",
    )
    p.add_argument(
        "--split",
        default=default_split,
        help="only lines with this 'split' field; 'all': every line"
        + (f" (default: {default_split})" if default_split else ""),
    )
    p.add_argument(
        "--out", metavar="DIR", help="report directory (default: PIXGLOT_HOME/evals/<date>-<dataset>-<model>)"
    )
    p.add_argument("--strict", action="store_true", help="fail on any data issue instead of reporting it")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="arithmetic of the forward pass (auto: bf16 on CUDA, fp32 on the CPU)",
    )
    p.add_argument(
        "--quantize", choices=("int8",), help="int8 dynamic quantisation of the Linear layers (CPU)"
    )
    add_database_option(p)
    p.add_argument("--no-record", action="store_true", help="do not store the run in the database")
    p.set_defaults(func=_run_benchmark, default_dir=default_dir)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="retrieval evaluation and evaluation runs", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    _add_benchmark(sub, "xm3600", "image<->text retrieval on Crossmodal-3600, per language", "xm3600", None)
    _add_benchmark(
        sub,
        "emoji36",
        "image<->text retrieval on Emoji-36 (built with pixglot data emoji36 build)",
        "emoji36",
        "test",
    )

    p = sub.add_parser(
        "embeddings", help="Recall@k of saved embeddings (.npz: image_emb, text_emb, text_image)"
    )
    p.add_argument("file", metavar="FILE.npz")
    p.add_argument("--protocol", choices=CAPTION_PROTOCOLS, default="all")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10], metavar="K")
    p.set_defaults(func=_run_embeddings)

    p = sub.add_parser("compare", help="two runs side by side, with per-language changes")
    p.add_argument("runs", type=int, nargs=2, metavar="RUN")
    add_database_option(p)
    p.set_defaults(func=_run_compare)

    p = sub.add_parser("list", help="the stored evaluation runs")
    p.add_argument("--dataset", help="only runs on this dataset")
    add_database_option(p)
    p.set_defaults(func=_run_list)


def _engine(args: argparse.Namespace) -> Engine:
    from ground.db import connect

    return connect(args.db)


def _run_benchmark(args: argparse.Namespace) -> int:
    import model
    from evaluation.reports import markdown_report
    from evaluation.retrieval import evaluate_retrieval
    from ground.home import datasets_dir

    data = Path(args.data) if args.data else datasets_dir() / args.default_dir
    encoder = model.load(args.model, precision=args.precision, quantize=args.quantize)
    if args.precision != "auto" or args.quantize:
        encoder.name = f"{encoder.name} ({args.quantize or args.precision})"  # runs tell them apart
    result = evaluate_retrieval(
        data,
        encoder,
        languages=_languages(args.languages),
        protocol=args.protocol,
        split=None if args.split == "all" else args.split,
        strict=args.strict,
        out_dir=args.out,
        engine=None if args.no_record else _engine(args),
        record=not args.no_record,
        batch_size=args.batch_size,
        progress=sys.stderr.isatty(),
    )
    print(markdown_report(result.run).split("\n## Data issues")[0].rstrip())
    for kind, path in result.reports.items():
        print(f"{kind}: {path}")
    if result.issues:
        print(
            f"pixglot: warning: {len(result.issues)} data issue(s), left out of the metrics "
            f"(listed in the report; --strict makes them fatal)",
            file=sys.stderr,
        )
        for issue in result.issues[:5]:
            print(f"  {issue}", file=sys.stderr)
    return 0


def load_embeddings(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"image_emb", "text_emb", "text_image"} - set(npz.files)
            if missing:
                raise FileFormatError(path, f"missing array(s) {', '.join(sorted(missing))}")
            return npz["image_emb"], npz["text_emb"], npz["text_image"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise FileFormatError(path, f"not a readable .npz file ({err})") from err


def _run_embeddings(args: argparse.Namespace) -> int:
    from evaluation.metrics import retrieval_metrics

    image_emb, text_emb, text_image = load_embeddings(Path(args.file))
    metrics = retrieval_metrics(image_emb, text_emb, text_image, ks=args.ks, protocol=args.protocol)
    print(json.dumps(metrics, indent=2))
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    from evaluation.runs import format_comparison, get_run

    engine = _engine(args)
    a, b = (get_run(run_id, engine=engine) for run_id in args.runs)
    print(format_comparison(a, b))
    return 0


def _run_list(args: argparse.Namespace) -> int:
    from evaluation.runs import list_runs

    runs = list_runs(args.dataset, engine=_engine(args))
    if not runs:
        print("no evaluation runs yet (pixglot eval xm3600 --model NAME)")
        return 0
    print("| run | date (UTC) | model | dataset | protocol | languages | i→t R@1 | t→i R@1 | issues |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        i2t, t2i = run.recall("mean", "image_to_text", 1), run.recall("mean", "text_to_image", 1)
        print(
            f"| {run.id} | {run.created_at:%Y-%m-%d %H:%M} | {run.model} | {run.dataset} | {run.protocol} | "
            f"{len(run.languages)} | {100 * (i2t or 0):.1f} | {100 * (t2i or 0):.1f} | "
            f"{run.metrics.get('n_issues', 0)} |"
        )
    return 0
