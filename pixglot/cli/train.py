"""`pixglot train`: contrastive training of a one-tower model from a TOML or JSON config."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on image/text Parquet shards",
        description="Contrastive training (CLIPPO softmax or SigLIP sigmoid loss) of one ViT that reads "
        "photos and rendered text. The config schema is documented in training/config.py; examples are in "
        "training/configs/. Kill a run at any time: the same command with --resume continues it from "
        "its last checkpoint.",
    )
    add_run_options(parser)
    parser.set_defaults(func=run)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of a training run, shared by `pixglot train` and `pixglot distill train`."""
    parser.add_argument("--config", required=True, metavar="FILE", help="training config (.toml or .json)")
    parser.add_argument("--out", metavar="DIR", help="output (model) directory; overrides the config's 'out'")
    parser.add_argument(
        "--data",
        nargs="+",
        metavar="SHARDS",
        help="training shards (directories or .parquet files); overrides data.train",
    )
    parser.add_argument(
        "--eval-data", nargs="+", metavar="SHARDS", help="held-out shards; overrides data.eval"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the output directory from its last checkpoint (or start it)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")


def _printer(quiet: bool) -> Callable[[dict], None]:
    def show(record: dict) -> None:
        if quiet:
            return
        if "eval" in record:
            mean = record["eval"]["mean"]
            t2i, i2t = mean["text_to_image"], mean["image_to_text"]
            print(
                f"step {record['step']}: held-out text->image R@1/5/10 "
                f"{t2i['recall@1']:.3f}/{t2i['recall@5']:.3f}/{t2i['recall@10']:.3f}, image->text "
                f"{i2t['recall@1']:.3f}/{i2t['recall@5']:.3f}/{i2t['recall@10']:.3f}",
                file=sys.stderr,
            )
        elif "loss" in record:
            terms = "".join(f" ({name} {value:.4f})" for name, value in record.get("terms", {}).items())
            rates = ", ".join(
                f"{record[f'{what}_per_second']:.1f} {what}/s"
                for what in ("pairs", "texts", "images")
                if f"{what}_per_second" in record
            )
            print(
                f"step {record['step']}: loss {record['loss']:.4f}{terms}, lr {record['lr']:.2e}, "
                f"temperature {record['temperature']:.2f}, {rates}",
                file=sys.stderr,
            )
        elif "event" in record:
            print(f"step {record['step']}: {record['event']}", file=sys.stderr)

    return show


def run(args: argparse.Namespace, overrides: dict | None = None, must_distil: bool = False) -> int:
    """Trains as the config and the options say; `overrides`: further dotted config keys;
    `must_distil`: the config must name a teacher."""
    from ground.errors import InputError
    from training import load_config, train
    from training.config import distilling

    overrides = dict(overrides or {})
    if args.out:
        overrides["out"] = args.out
    if args.data:
        overrides["data.train"] = args.data
    if args.eval_data:
        overrides["data.eval"] = args.eval_data
    config = load_config(args.config, overrides)
    if must_distil and not distilling(config):
        raise InputError(
            f"{args.config}: no teacher in its [distill] section (texts, images or image_target = "
            '"self"): give --teacher-texts, or train without a teacher with pixglot train'
        )
    result = train(config, resume=args.resume, on_record=_printer(args.quiet))
    summary = f"trained {result.steps} steps in {result.seconds / 60:.1f} min; model in {result.out}"
    if result.held_out:
        t2i = result.held_out["text_to_image"]
        summary += f" (held-out text->image R@5 {t2i['recall@5']:.3f})"
    print(summary)
    return 0
