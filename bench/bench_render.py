"""Rendering speed: captions per second on one core, for each renderer style and a PangoCairo anchor.

Run: .venv/bin/python bench/bench_render.py [--repeats 5]
Sets: bench/captions.jsonl, 144 image captions in the 36 Crossmodal-3600 languages ("captions"),
and a 2-4 word search query for each ("queries"). Everything runs pinned to one core. After a
warm-up pass over each set, `--repeats` rounds each time one pass (the set rendered `--loops` times)
of every style and of the anchor, one after another, so that all of them see the same moments of a
shared machine. Reported: the best pass (the least disturbed), the median, and the median over
rounds of each style's speed relative to the anchor's in the same round. The anchor
(bench/pango_anchor.py) runs under the system Python, which has PyGObject, as a subprocess serving
timed passes; it is 'n/a' where that is missing, as is a style that cannot be built here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing the package

import numpy as np  # noqa: E402

from rendering import STYLES, get_renderer  # noqa: E402

CAPTIONS = HERE / "captions.jsonl"
SETS = {"captions": "caption", "queries": "query"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pin_to_one_core() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})  # the anchor subprocess inherits it
    return f"pinned to core {core}"


class Style:
    """A renderer of this checkout, timed in this process: one `render` call per text, or with
    `batched` one `render_many` call per set (the path of training and bulk text encoding)."""

    def __init__(self, style: str, sets: dict[str, list[str]], loops: int, batched: bool):
        self.name = f"{style}, batches of {len(next(iter(sets.values())))}" if batched else style
        self.renderer = get_renderer(style)
        self.sets, self.loops, self.batched = sets, loops, batched
        for texts in sets.values():  # warm-up: fonts, glyph caches, compiled code
            self._draw(texts)

    def _draw(self, texts: list[str]) -> None:
        if self.batched:
            self.renderer.render_many(texts)
        else:
            for text in texts:
                self.renderer.render(text)

    def timed_pass(self, set_name: str) -> tuple[int, float]:
        texts = self.sets[set_name]
        start = time.perf_counter()
        for _ in range(self.loops):
            self._draw(texts)
        return len(texts) * self.loops, time.perf_counter() - start


class Anchor:
    """PangoCairo in a subprocess (bench/pango_anchor.py) that times passes when asked."""

    name = "pangocairo"

    def __init__(self, python: str, loops: int):
        command = [python, str(HERE / "pango_anchor.py"), str(CAPTIONS), "--loops", str(loops)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        first = self.process.stdout.readline()
        if not first:
            reason = self.process.stderr.read().strip().splitlines()
            raise RuntimeError(reason[-1] if reason else "the anchor exited")
        versions = json.loads(first)
        self.info = f"Pango {versions['pango']}, cairo {versions['cairo']}, Noto Sans 11 px, WRAP_WORD_CHAR"

    def timed_pass(self, set_name: str) -> tuple[int, float]:
        self.process.stdin.write(set_name + "\n")
        self.process.stdin.flush()
        result = json.loads(self.process.stdout.readline())
        return result["n"], result["seconds"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def measure(sides: list, repeats: int) -> dict[tuple[str, str], tuple[int, list[float]]]:
    """(side, set) -> (texts per pass, seconds of each pass), passes interleaved round by round."""
    passes: dict[tuple[str, str], tuple[int, list[float]]] = {}
    for _ in range(repeats):
        for side in sides:
            for set_name in SETS:
                n, seconds = side.timed_pass(set_name)
                passes.setdefault((side.name, set_name), (n, []))[1].append(seconds)
    return passes


def markdown(
    passes: dict[tuple[str, str], tuple[int, list[float]]], missing: dict[tuple[str, str], str]
) -> str:
    lines = [
        "| style | set | captions/s/core (best pass) | ms/caption (best) | ms/caption (median) "
        "| speed vs PangoCairo (median of rounds) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for (style, set_name), (n, seconds) in passes.items():
        best, median = min(seconds), statistics.median(seconds)
        anchor = passes.get(("pangocairo", set_name))
        ratio = "n/a"
        if anchor:
            speed = statistics.median(a / s for a, s in zip(anchor[1], seconds, strict=True)) * n / anchor[0]
            ratio = f"{speed:.2f}×"
        per_caption = f"{1000 * best / n:.3f} | {1000 * median / n:.3f}"
        lines.append(f"| {style} | {set_name} | {n / best:,.0f} | {per_caption} | {ratio} |")
    lines += [
        f"| {style} | {set_name} | {reason} | n/a | n/a | n/a |"
        for (style, set_name), reason in missing.items()
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=9, help="rounds of timed passes")
    parser.add_argument("--loops", type=int, default=5, help="times each pass renders the whole set")
    parser.add_argument("--system-python", default="/usr/bin/python3", help="a Python with PyGObject")
    args = parser.parse_args()
    with CAPTIONS.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    pinning = pin_to_one_core()
    sets = {name: [row[field] for row in rows] for name, field in SETS.items()}
    sides, missing = [], {}
    for style in reversed(STYLES):  # unifont first: it needs nothing but Unifont
        try:
            sides += [Style(style, sets, args.loops, batched) for batched in (False, True)]
        except Exception as e:  # a style still being written, or its fonts missing
            missing.update({(style, name): f"n/a ({type(e).__name__}: {e})" for name in SETS})
    anchor_info = "PangoCairo unavailable"
    try:
        anchor = Anchor(args.system_python, args.loops)
        sides.append(anchor)
        anchor_info = anchor.info
    except (OSError, RuntimeError, ValueError) as e:
        missing.update({("pangocairo", name): f"n/a ({e})" for name in SETS})
    passes = measure(sides, args.repeats)
    if sides and isinstance(sides[-1], Anchor):
        sides[-1].close()
    languages = len({row["language"] for row in rows})
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores; benchmark {pinning}")
    print(f"Python {platform.python_version()}, numpy {np.__version__}; anchor: {anchor_info}")
    print(
        f"Set: {len(rows)} captions and {len(rows)} queries in {languages} languages ({CAPTIONS.name}); "
        f"224 x 224 px; {args.repeats} interleaved rounds of one timed pass per style and set (each "
        f"renders the set {args.loops} times), after one warm-up pass"
    )
    print()
    print(markdown(passes, missing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
