"""The demo model's recipe run end to end on one GPU machine, every phase time-boxed: the weights that
ship in data/assets/models/demo, and the numbers its EVAL.md and bench/RESULTS.md report.

    python bench/demo_recipe.py --recipe RECIPE.toml --shards EMOJI36_ALL_SHARDS --out DIR \\
        --budget 520 [--baseline-src CHECKOUT]

Phases (a summary is written whatever happens, and a phase that fails stops the run at once):
1. checks: the tests that run on CUDA (batches gathered on the GPU, the padding mask);
2. the shards split into Emoji-36's train and test emoji (the dataset's own rule, `split_of`);
3. cache: both renderers' rendered-text caches filled cold with every text (texts/s, all cores);
4. bench: this trainer alone on the recipe, then the trainer of --baseline-src (captions/s, the
   GPU's utilisation and power);
5. probe: the three runs below started together for a few dozen steps, to measure the rate each
   gets while they share the GPU; the recipe's steps are set from it so that they end in time;
6. the runs, together: `shipped` (every emoji, evaluated on the test emoji, which it trains on),
   `heldout` (the train emoji, evaluated on the unseen test emoji and on as many seen ones) and
   `heldout-unifont` (the same with the unifont renderer, for the comparison of renderers);
7. DIR/summary.json, DIR/train.toml (the recipe as run) and each run's directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import TypeVar

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_train import cold_cache, recipe, time_trainer  # noqa: E402
from phases import Phases  # noqa: E402

T = TypeVar("T")
RUNS = ("shipped", "heldout", "heldout-unifont")
EVALUATIONS = 8  # evaluations during a run, besides the final one
RESERVE_SECONDS = 45  # kept at the end: final evaluations, saving, the summary


class Driver(Phases):
    def __init__(self, args: argparse.Namespace):
        super().__init__(args.out, args.budget)
        self.args = args
        self.work = Path(args.work)
        self.home = self.work / "home"
        self.env = {**os.environ, "PIXGLOT_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}

    # ---------------------------------------------------------------- phases

    def checks(self) -> None:
        tests = ["tests/test_train_data.py", "tests/test_model_vit.py", "-k", "cuda or vit or padded"]
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=min(120, self.left()),
        )  # fmt: skip
        self.summary["checks"] = done.stdout[-2000:]
        if done.returncode:
            raise RuntimeError(f"CUDA checks failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")

    def split(self) -> dict[str, Path]:
        from data.emoji36 import emoji_of_key, split_of

        table = pq.read_table(self.args.shards)
        keys = table.column("key").to_pylist()
        split = {k: split_of(emoji_of_key(k)) for k in set(keys)}
        shards = {"all": Path(self.args.shards)}
        for name in ("train", "test"):
            directory = self.work / name
            directory.mkdir(parents=True, exist_ok=True)
            rows = [i for i, k in enumerate(keys) if split[k] == name]
            pq.write_table(table.take(rows), directory / f"emoji36-{name}.parquet", row_group_size=8192)
            shards[name] = directory
            self.summary.setdefault("data", {})[name] = {
                "rows": len(rows),
                "images": len({keys[i] for i in rows}),
            }
        return shards

    def cache(self, shards: dict[str, Path]) -> None:
        """Both renderers' caches filled cold with every text of every emoji: what the runs read."""
        result = self.summary.setdefault("bench", {})
        for style in ("shaped", "unifont"):
            raw = recipe(self.args.recipe, [str(shards["all"])], 1, [f'model.renderer={{style="{style}"}}'])
            (self.work / "cache" / style).mkdir(parents=True, exist_ok=True)
            result[f"cold_cache_{style}"] = cold_cache(raw, self.work / "cache" / style, home=self.home)

    def bench(self, shards: dict[str, Path]) -> None:
        raw = recipe(self.args.recipe, [str(shards["all"])], self.args.bench_steps, [])
        work = self.work / "bench"
        for name in ("this", "baseline"):
            (work / name).mkdir(parents=True, exist_ok=True)
        result = self.summary.setdefault("bench", {})
        result["this"] = time_trainer(REPO, raw, work / "this", True, home=self.home)
        self.write_summary()
        if self.args.baseline_src and self.left() > self.args.baseline_seconds + 240:
            base = recipe(self.args.recipe, [str(shards["all"])], self.args.baseline_steps, [])
            result["baseline"] = time_trainer(self.args.baseline_src, base, work / "baseline", True)
            result["speedup"] = round(
                result["this"]["captions_per_second"] / result["baseline"]["captions_per_second"], 2
            )

    def configs(self, steps: int, shards: dict[str, Path]) -> dict[str, Path]:
        """The recipe with its steps set (DIR/train.toml, what ships), and each run's config."""
        text = self.args.recipe.read_text(encoding="utf-8")
        every = max(1, steps // EVALUATIONS)
        for key, value in (
            ("steps", steps),
            ("warmup_steps", max(1, round(steps * self.args.warmup))),
            ("eval_every", every),
            ("checkpoint_every", every),
        ):
            text, n = re.subn(rf"(?m)^{key} = \d+", f"{key} = {value}", text)
            if n != 1:
                raise ValueError(f"{self.args.recipe}: no single line '{key} = N' to set")
        shipped = self.out / "train.toml"
        shipped.write_text(text, encoding="utf-8")
        raw = tomllib.loads(text)
        held = {**raw, "data": {**raw["data"], "eval_seen_images": 609}}
        unifont = {**held, "model": {**raw["model"], "renderer": {"style": "unifont"}}}
        paths = {"shipped": shipped}
        for name, config in (("heldout", held), ("heldout-unifont", unifont)):
            paths[name] = self.work / f"{name}.json"
            paths[name].write_text(json.dumps(config))
        return paths

    def launch(
        self, configs: dict[str, Path], shards: dict[str, Path], prefix: str
    ) -> dict[str, subprocess.Popen]:
        data = {"shipped": "all", "heldout": "train", "heldout-unifont": "train"}
        processes = {}
        for name in RUNS:
            out = self.work / prefix / name
            log = open(self.work / f"{prefix}-{name}.log", "w")  # noqa: SIM115 - open while it runs
            command = [
                sys.executable, "-m", "pixglot", "train", "--config", str(configs[name]),
                "--data", str(shards[data[name]]), "--eval-data", str(shards["test"]), "--out", str(out),
            ]  # fmt: skip
            processes[name] = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return processes

    def probe(self, shards: dict[str, Path]) -> float:
        """Captions/s each run makes while the three share the GPU."""
        configs = self.configs(100_000, shards)
        processes = self.launch(configs, shards, "probe")
        rates: dict[str, list[float]] = {}
        started = time.monotonic()
        try:
            while time.monotonic() - started < self.args.probe_seconds:
                time.sleep(2)
                for name, process in processes.items():
                    if process.poll() is not None:
                        output = (self.work / f"probe-{name}.log").read_text()[-3000:]
                        raise RuntimeError(f"probe run {name} stopped: {output}")
                    log = self.work / "probe" / name / "train_log.jsonl"
                    records = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
                    rates[name] = [r["pairs_per_second"] for r in records if "pairs_per_second" in r][2:]
                if all(len(r) >= 3 for r in rates.values()) and len(rates) == len(RUNS):
                    break
        finally:
            first_log = {n: (self.work / f"probe-{n}.log").read_text()[-500:] for n in processes}
            for process in processes.values():
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # The last windows: by then every run is past its start-up and they share the GPU.
        per_run = {name: statistics.median(r[-3:]) for name, r in rates.items() if len(r) >= 3}
        self.summary["probe"] = {"rates": per_run, "windows": rates, "logs": first_log}
        if not per_run:
            raise RuntimeError(f"the probe measured no steady rate: {rates}")
        return min(per_run.values())

    def train(self, rate: float, shards: dict[str, Path]) -> None:
        batch = tomllib.loads(self.args.recipe.read_text())["data"]["batch_size"]
        seconds = self.left() - RESERVE_SECONDS - self.args.start_up_seconds - self.args.eval_seconds
        steps = int(rate * seconds / batch * self.args.safety) // 100 * 100
        if steps < 200:
            raise RuntimeError(f"only {seconds:.0f} s left for training at {rate:.0f} captions/s")
        self.summary["recipe"] = {"steps": steps, "rate_per_run": rate, "planned_seconds": round(seconds)}
        self.write_summary()
        processes = self.launch(self.configs(steps, shards), shards, "runs")
        ended: dict[str, int | None] = {}
        while len(ended) < len(RUNS) and self.left() > 10:
            time.sleep(2)
            for name, process in processes.items():
                if name not in ended and process.poll() is not None:
                    ended[name] = process.returncode
        for name, process in processes.items():
            if name not in ended:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                ended[name] = None
        self.summary["runs"] = {}
        for name in RUNS:
            if ended[name] is None:
                self.keep_weights(self.work / "runs" / name)
            log = self.work / "runs" / name / "train_log.jsonl"
            records = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
            steps_done = max((r.get("step", 0) for r in records), default=0)
            finals = {k: r[k]["mean"] for r in records for k in ("eval", "eval_seen") if k in r}
            self.summary["runs"][name] = {
                "exit": ended[name],
                "steps": steps_done,
                "final": finals,
                "output_tail": (self.work / f"runs-{name}.log").read_text()[-1500:],
            }

    @staticmethod
    def keep_weights(run: Path) -> None:
        """A run stopped at the deadline: its last checkpoint's network as model-step-N.safetensors."""
        import torch
        from safetensors.torch import save_file

        from training import checkpoint

        found = checkpoint.list_checkpoints(run)
        if found:
            step, path = found[-1]
            state = torch.load(path, map_location="cpu", weights_only=True)["model"]
            save_file({k: v.contiguous() for k, v in state.items()}, run / f"model-step-{step}.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", type=Path, required=True)
    parser.add_argument(
        "--shards", type=Path, required=True, help="Emoji-36 shards of every emoji (--split all)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", default="/tmp/demo-recipe")
    parser.add_argument("--budget", type=float, default=520, help="seconds for everything")
    parser.add_argument("--baseline-src", type=Path)
    parser.add_argument("--bench-steps", type=int, default=150)
    parser.add_argument("--baseline-steps", type=int, default=10)
    parser.add_argument("--baseline-seconds", type=float, default=60, help="what the baseline phase may take")
    parser.add_argument("--probe-seconds", type=float, default=60)
    parser.add_argument(
        "--start-up-seconds", type=float, default=30, help="a run's start before its first step"
    )
    parser.add_argument("--eval-seconds", type=float, default=40, help="a run's evaluations, all together")
    parser.add_argument("--safety", type=float, default=0.9, help="fraction of the probe's rate planned on")
    parser.add_argument("--warmup", type=float, default=0.03, help="warm-up as a fraction of the steps")
    parser.add_argument("--skip", nargs="*", default=[], choices=["checks", "bench"])
    args = parser.parse_args()
    driver = Driver(args)
    try:
        if "checks" not in args.skip:
            driver.phase("checks", driver.checks)
        shards = driver.phase("split", driver.split)
        driver.phase("cache", driver.cache, shards)
        if "bench" not in args.skip:
            driver.phase("bench", driver.bench, shards)
        rate = driver.phase("probe", driver.probe, shards)
        driver.phase("train", driver.train, rate, shards)
    finally:
        driver.summary["left_seconds"] = round(driver.left(), 1)
        driver.write_summary()


if __name__ == "__main__":
    main()
