"""Recall against caption views, from training logs: the plot and the table of the demo model's EVAL.md.

    python bench/demo_curves.py --run heldout=RUN_DIR --run shipped=RUN_DIR ... --out curves.png

Each run's train_log.jsonl holds its evaluations: "eval" (its held-out images) and "eval_seen"
(images it trains on). A point is text->image Recall@5, the mean over languages, at the caption views
seen by then (steps x captions per batch x micro-batches per step, from the run's config.json).
`--run-seen LABEL=DIR` is a run whose "eval" images are among those it trains on (a run on every
image, evaluated on some of them); `--point LABEL=VIEWS:RECALL` adds one measured point (an earlier
recipe, say). The table goes to standard output as Markdown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

SERIES = {"eval": "held-out images", "eval_seen": "images trained on"}


def captions_per_step(run: Path) -> int:
    config = json.loads((run / "config.json").read_text())["training"]["config"]
    return config["data"]["batch_size"] * config["optimizer"]["accumulate"]


def curves(run: Path, seen: bool = False) -> dict[str, list[tuple[float, float]]]:
    """series name -> [(caption views, t->i Recall@5 in %)] of one run."""
    per_step = captions_per_step(run)
    out: dict[str, list[tuple[float, float]]] = {}
    for line in (run / "train_log.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for kind, name in SERIES.items():
            if kind in record:
                recall = record[kind]["mean"]["text_to_image"]["recall@5"]
                name = SERIES["eval_seen"] if seen else name
                out.setdefault(name, []).append((record["step"] * per_step, 100 * recall))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", action="append", default=[], metavar="LABEL=DIR")
    parser.add_argument("--run-seen", action="append", default=[], metavar="LABEL=DIR")
    parser.add_argument("--point", action="append", default=[], metavar="LABEL=VIEWS:RECALL")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="Emoji-36: text->image Recall@5 (mean of 36 languages)")
    args = parser.parse_args()

    figure, axes = plt.subplots(figsize=(9, 6.5), dpi=110)
    rows = []
    runs = [(item, False) for item in args.run] + [(item, True) for item in args.run_seen]
    for item, seen in runs:
        label, _, directory = item.partition("=")
        for series, points in curves(Path(directory), seen).items():
            name = f"{label}: {series}"
            axes.plot([v / 1e6 for v, _ in points], [r for _, r in points], marker="o", label=name)
            rows += [(name, views, recall) for views, recall in points]
    for item in args.point:
        label, _, value = item.partition("=")
        views, _, recall = value.partition(":")
        axes.plot([float(views) / 1e6], [float(recall)], marker="*", markersize=12, linestyle="", label=label)
        rows.append((label, float(views), float(recall)))
    axes.set_xscale("log")
    ticks = [0.5, 1, 2, 5, 10, 20, 50]
    axes.set_xticks(ticks, [f"{t:g}" for t in ticks])
    axes.set_xlim(0.4, 60)
    axes.set_xlabel("caption views (millions, log scale)")
    axes.set_ylabel("text->image Recall@5 (%)")
    axes.set_title(args.title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    figure.tight_layout()
    figure.savefig(args.out)
    print("| series | caption views | t→i R@5 (%) |\n| --- | ---: | ---: |")
    for name, views, recall in rows:
        print(f"| {name} | {views / 1e6:.2f} M | {recall:.1f} |")


if __name__ == "__main__":
    main()
