"""The long fuzz run of both renderers: the property `make test` checks on a few hundred inputs,
over at least 100,000.

    python bench/bench_render_fuzz.py [--examples 100000] [--styles shaped,unifont] [--sample 2000]

Inputs are Hypothesis's, from the strategy of tests/test_rendering_fuzz.py: batches of 1 to 4 texts
of any code point (unassigned, private use, controls, lone surrogates), with bidi controls, Hebrew,
Arabic, digits and brackets drawn often. Each batch must render (or raise InputError, counted) with
well-formed reports, and each text alone must give the batch's pixels and report. Then a sample of
the texts is drawn again in worker processes (a fork server, as the encoder's workers) and compared
with this process's pixels. Prints the counts as JSON; RESULTS.md records them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_rendering_fuzz import RENDERERS, TEXTS, check_report

from ground.errors import InputError
from rendering import shared_renderer


def fuzz(style: str, examples: int, keep: list[str]) -> Counter:
    renderer = RENDERERS[style]
    counts: Counter = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(texts=TEXTS)
    def one_batch(texts: list[str]) -> None:
        counts["batches"] += 1
        counts["texts"] += len(texts)
        counts["code points"] += sum(map(len, texts))
        try:
            images, reports = renderer.render_many(texts)
        except InputError:
            counts["InputError"] += 1
            return
        for text, image, report in zip(texts, images, reports, strict=True):
            check_report(report, text)
            alone = renderer.render_with_report(text)
            assert np.array_equal(alone.image, image), f"alone differs from the batch: {text!r}"
            assert alone.report == report, f"report alone differs from the batch's: {text!r}"
            counts["rendered"] += 1
            counts["complete"] += report.complete
            counts["with missing glyphs"] += bool(report.missing)
            counts["truncated"] += bool(report.truncated)
            if len(keep) < 50_000:
                keep.append(text)

    one_batch()
    return counts


def _draw(config: dict, texts: list[str]) -> list[bytes]:
    images, _ = shared_renderer(config).render_many(texts)
    return [image.tobytes() for image in images]


def across_processes(style: str, texts: list[str], workers: int = 2) -> int:
    """How many of `texts` a worker process draws differently from this process."""
    config = RENDERERS[style].config
    here = _draw(config, texts)
    chunks = [texts[i : i + 64] for i in range(0, len(texts), 64)]
    with multiprocessing.get_context("forkserver").Pool(workers) as pool:
        there = [image for chunk in pool.starmap(_draw, [(config, c) for c in chunks]) for image in chunk]
    return sum(a != b for a, b in zip(here, there, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000, help="batches per renderer")
    parser.add_argument("--styles", default="shaped,unifont")
    parser.add_argument("--sample", type=int, default=2000, help="texts drawn again in worker processes")
    args = parser.parse_args()
    results = {"machine": f"{platform.machine()}, {multiprocessing.cpu_count()} cores", "styles": {}}
    for style in args.styles.split(","):
        kept: list[str] = []
        start = time.perf_counter()
        counts = fuzz(style, args.examples, kept)
        seconds = time.perf_counter() - start
        sample = random.Random(0).sample(kept, min(args.sample, len(kept)))
        differ = across_processes(style, sample)
        results["styles"][style] = {
            **counts,
            "seconds": round(seconds, 1),
            "batches/s": round(counts["batches"] / seconds, 1),
            "drawn again in workers": len(sample),
            "differing in workers": differ,
        }
        print(json.dumps({style: results["styles"][style]}, ensure_ascii=False), flush=True)
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
