"""What `--ray` costs on one machine: the same folder indexed by the single-machine path and by Ray.

    python bench/bench_ray_index.py                          # 2,000 JPEGs, 640x480, the demo model
    python bench/bench_ray_index.py --images 300 --model tiny-test

Each path indexes the folder into a fresh collection of its own (the same files, the page cache
warm for both: one untimed read of every file first). Ray's time is split into starting a local
instance (`ray.init`, timed apart) and the run itself. The shipped demo model is the default: its
encoder is small, so the comparison shows Ray's overheads (task and actor start, moving pixels
through the object store) rather than the model's arithmetic. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--model", default="demo", help="a model name, or a shipped config (random weights)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray instance")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pixglot-bench-ray-") as scratch:
        os.environ["PIXGLOT_HOME"] = str(Path(scratch) / "home")
        import ray

        import model
        from indexer import IndexOptions, index_paths
        from indexer.samples import write_images

        name = args.model
        if name in model.encoder.shipped_configs():
            model.save(model.create(name), Path(scratch) / "home" / "models" / name)
        folder = Path(scratch) / "photos"
        write_images(folder, args.images, size=tuple(args.size), suffixes=(".jpg",))
        for path in folder.iterdir():
            path.read_bytes()  # the page cache warm for both runs

        here_options = IndexOptions(progress=False)
        start = time.perf_counter()
        here = index_paths([folder], "here", name, options=here_options)
        here_s = time.perf_counter() - start

        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - start
        try:
            start = time.perf_counter()
            there = index_paths([folder], "there", name, options=replace(here_options, ray="local"))
            there_s = time.perf_counter() - start
        finally:
            ray.shutdown()

    assert here.encoded == there.encoded == args.images, (here.encoded, there.encoded)
    print(
        json.dumps(
            {
                "images": args.images,
                "size": list(args.size),
                "model": name,
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                "single_machine_s": round(here_s, 2),
                "single_machine_images_per_s": round(args.images / here_s, 1),
                "ray_init_s": round(init_s, 2),
                "ray_run_s": round(there_s, 2),
                "ray_images_per_s": round(args.images / there_s, 1),
                "ray_overhead_x": round(there_s / here_s, 2),
                "ray_timings": {k: round(v, 2) for k, v in there.timings.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
