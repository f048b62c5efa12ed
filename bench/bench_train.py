"""Training throughput: captions per second of a recipe with this checkout's trainer, against the
trainer of another checkout (an earlier revision) on the same data, config and machine.

    git worktree add /tmp/pixglot-before REV      # the trainer to compare against
    python bench/bench_train.py --config data/assets/models/demo/train.toml --data SHARDS \\
        --steps 60 --baseline-src /tmp/pixglot-before [--set data.batch_size=256 ...] [--json out.json]

Phases, each with a fresh PIXGLOT_HOME so that no cache of an earlier phase helps:
1. cold cache: every text the recipe's batches can show, drawn into an empty rendered-text cache on
   all cores; texts/s, the renderer's first compilation timed apart;
2. this trainer, `--steps` steps in its own process: captions/s is the median of the log windows
   after the first (the first holds the start-up); on CUDA, the GPU's utilisation and power,
   sampled by nvidia-smi over the second half of the run;
3. the baseline trainer (`--baseline-src`), the same config in its own process and the same rule.
A trainer's own start-up (reading the shards, decoding the images, filling the cache) is outside
the rate and reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def recipe(config: Path, data: list[str], steps: int, sets: list[str]) -> dict:
    """The recipe as a raw config dict: `--set` overrides, then what a timing run needs."""
    raw = tomllib.loads(config.read_text(encoding="utf-8"))
    for item in sets:
        dotted, _, value = item.partition("=")
        *sections, key = dotted.split(".")
        target = raw
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = tomllib.loads(f"v = {value}")["v"]
    raw["steps"] = steps
    raw.setdefault("data", {})["train"] = [str(Path(p).resolve()) for p in data]
    raw.setdefault("schedule", {})["warmup_steps"] = min(raw["schedule"].get("warmup_steps", 0), steps)
    run = raw.setdefault("run", {})
    run.update(log_every=max(1, steps // 10), checkpoint_every=0, eval_every=0)
    return raw


class GpuSampler:
    """nvidia-smi's utilisation and power, sampled every 200 ms while the run lasts."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float]] = []  # (time, utilisation %, watts)
        try:
            self.process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,power.draw", "--format=csv,noheader,nounits",
                 "-lms", "200"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        except OSError:
            self.process = None
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                util, watts = (float(v) for v in line.split(","))
            except ValueError:
                continue
            self.samples.append((time.monotonic(), util, watts))

    def summary(self, since: float) -> dict | None:
        if self.process is None:
            return None
        self.process.terminate()
        self.process.wait()
        kept = [s for s in self.samples if s[0] >= since]
        if not kept:
            return None
        return {
            "utilisation_percent": round(statistics.mean(s[1] for s in kept), 1),
            "power_watts": round(statistics.mean(s[2] for s in kept), 1),
            "samples": len(kept),
        }


def time_trainer(source: Path, raw: dict, work: Path, cuda: bool, home: Path | None = None) -> dict:
    """One trainer in its own process (PIXGLOT_HOME `home`, a fresh one by default); its steady
    rate from its log."""
    home, out = home or work / "home", work / "run"
    config = work / "config.json"
    config.write_text(json.dumps({**raw, "out": str(out)}))
    env = {
        **os.environ,
        "PIXGLOT_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(source), os.environ.get("PYTHONPATH", "")]),
    }
    sampler = GpuSampler() if cuda else None
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pixglot", "train", "--config", str(config), "--quiet"],
        cwd=source, env=env, capture_output=True, text=True,
    )  # fmt: skip
    ended = time.monotonic()
    if done.returncode:
        raise SystemExit(f"the trainer of {source} failed:\n{done.stderr[-3000:]}")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    windows = [r for r in log if "pairs_per_second" in r][1:]
    rates = [r["pairs_per_second"] for r in windows[1:]] or [r["pairs_per_second"] for r in windows]
    rate = statistics.median(rates)
    captions = raw["steps"] * raw["data"].get("batch_size", 256)
    result = {
        "source": str(source),
        "captions_per_second": round(rate, 1),
        "windows": [round(r, 1) for r in rates],
        "wall_seconds": round(ended - started, 1),
        # What the steps at the steady rate leave of the wall time: start-up, warm-up, the end.
        "other_seconds": round(ended - started - captions / rate, 1),
    }
    if sampler is not None:
        result["gpu"] = sampler.summary(since=started + (ended - started) / 2)
    return result


def cold_cache(raw: dict, work: Path, home: Path | None = None) -> dict:
    """Every text the recipe's batches can show, drawn into an empty cache (in PIXGLOT_HOME `home`,
    a fresh one by default): texts/s on all cores."""
    os.environ["PIXGLOT_HOME"] = str(home or work / "home")
    from rendering.text_cache import TextCache
    from training import load_config
    from training.data import read_index, shown_texts
    from training.loop import build_model

    path = work / "config.json"
    path.write_text(json.dumps({**raw, "out": str(work / "unused")}))
    config = load_config(path)
    _, model_config = build_model(config, "bench")
    texts = shown_texts(
        read_index(config["data"]["train"], fingerprint=False), config["data"]["single_keywords"]
    )
    cache = TextCache(model_config["renderer"], model_config["text_trim"])
    started = time.perf_counter()
    cache.get(["compile"])  # the renderer's loops compiled and stored in numba's cache
    compiled = time.perf_counter()
    rendered = cache.get(texts)
    ended = time.perf_counter()
    return {
        "texts": len(texts),
        "compile_seconds": round(compiled - started, 1),
        "render_seconds": round(ended - compiled, 1),
        "texts_per_second": round(len(texts) / (ended - compiled)),
        "cores": len(os.sched_getaffinity(0)),
        "cache_bytes": int(rendered.rows.nbytes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "data/assets/models/demo/train.toml")
    parser.add_argument("--data", nargs="+", required=True, help="training shards")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override (TOML value)"
    )
    parser.add_argument("--baseline-src", type=Path, help="a checkout whose trainer to compare against")
    parser.add_argument("--baseline-steps", type=int, help="steps of the baseline (default: --steps)")
    parser.add_argument("--skip-cache", action="store_true", help="leave out the cold-cache phase")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()

    import torch
    from bench_encode import machine

    cuda = torch.cuda.is_available()
    raw = recipe(args.config, args.data, args.steps, args.set)
    results: dict = {
        "machine": machine(),
        "recipe": str(args.config),
        "overrides": args.set,
        "steps": args.steps,
    }
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        if not args.skip_cache:
            (work / "cache").mkdir()
            results["cold_cache"] = cold_cache(raw, work / "cache")
            print(f"cold cache: {results['cold_cache']}", flush=True)
        (work / "this").mkdir()
        results["this"] = time_trainer(REPO, raw, work / "this", cuda)
        print(f"this trainer: {results['this']}", flush=True)
        if args.baseline_src:
            (work / "baseline").mkdir()
            base_raw = recipe(args.config, args.data, args.baseline_steps or args.steps, args.set)
            results["baseline"] = time_trainer(args.baseline_src.resolve(), base_raw, work / "baseline", cuda)
            results["speedup"] = round(
                results["this"]["captions_per_second"] / results["baseline"]["captions_per_second"], 2
            )
            print(f"baseline trainer: {results['baseline']}", flush=True)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
