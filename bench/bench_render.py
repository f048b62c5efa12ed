"""Rendering speed: captions per second on one core, for each renderer style and a PangoCairo anchor.

Run: .venv/bin/python bench/bench_render.py [--repeats 5]
Sets: bench/captions.jsonl, 144 image captions in the 36 Crossmodal-3600 languages ("captions"),
and a 2-4 word search query for each ("queries"). Each measurement renders the whole set once to
warm up, then times `--repeats` passes (each renders the set `--loops` times) and reports the
best pass (the least disturbed by other work on the machine) and the median, in a single process
pinned to one core. The anchor (bench/pango_anchor.py) runs under
the system Python, which has PyGObject; it is 'n/a' where that is missing, as is a style that
cannot be built here.
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


def timed_passes(render, texts: list[str], repeats: int, loops: int) -> list[float]:
    for text in texts:
        render(text)
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            for text in texts:
                render(text)
        passes.append(time.perf_counter() - start)
    return passes


def style_rows(rows: list[dict], repeats: int, loops: int) -> list[tuple[str, str, int, list[float] | str]]:
    results = []
    for style in reversed(STYLES):  # unifont first: it needs nothing but Unifont
        try:
            renderer = get_renderer(style)
            renderer.render("warm up")
        except Exception as e:  # a style still being written, or its fonts missing
            for name in SETS:
                results.append((style, name, len(rows), f"n/a ({type(e).__name__}: {e})"))
            continue
        for name, field in SETS.items():
            texts = [row[field] for row in rows]
            passes = timed_passes(renderer.render, texts, repeats, loops)
            results.append((style, name, len(texts) * loops, passes))
    return results


def anchor_rows(rows: list[dict], repeats: int, loops: int, python: str) -> tuple[list, str]:
    script = HERE / "pango_anchor.py"
    command = [python, str(script), str(CAPTIONS), "--repeats", str(repeats), "--loops", str(loops)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
        report = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        reason = f"n/a ({detail.strip().splitlines()[-1] if detail.strip() else type(e).__name__})"
        return [("pangocairo", name, len(rows), reason) for name in SETS], "PangoCairo unavailable"
    results = [("pangocairo", name, s["n"], s["passes_s"]) for name, s in report["sets"].items()]
    return results, f"Pango {report['pango']}, cairo {report['cairo']}, Noto Sans 11 px, WRAP_WORD_CHAR"


def markdown(results: list[tuple[str, str, int, list[float] | str]]) -> str:
    lines = [
        "| style | set | captions/s/core (best pass) | ms/caption (best) | ms/caption (median) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for style, name, n, passes in results:
        if isinstance(passes, str):
            lines.append(f"| {style} | {name} | {passes} | n/a | n/a |")
            continue
        best, median = min(passes), statistics.median(passes)
        per_caption = f"{1000 * best / n:.3f} | {1000 * median / n:.3f}"
        lines.append(f"| {style} | {name} | {n / best:,.0f} | {per_caption} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over each set")
    parser.add_argument("--loops", type=int, default=5, help="times each pass renders the whole set")
    parser.add_argument("--system-python", default="/usr/bin/python3", help="a Python with PyGObject")
    args = parser.parse_args()
    with CAPTIONS.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    pinning = pin_to_one_core()
    results = style_rows(rows, args.repeats, args.loops)
    anchor, anchor_info = anchor_rows(rows, args.repeats, args.loops, args.system_python)
    languages = len({row["language"] for row in rows})
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores; benchmark {pinning}")
    print(f"Python {platform.python_version()}, numpy {np.__version__}; anchor: {anchor_info}")
    print(
        f"Set: {len(rows)} captions and {len(rows)} queries in {languages} languages ({CAPTIONS.name}); "
        f"224 x 224 px; best and median of {args.repeats} timed passes (each renders the set "
        f"{args.loops} times) after one warm-up pass"
    )
    print()
    print(markdown(results + anchor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
