"""The GPU measurements of bulk indexing, in one time-boxed run (GPU time is often short):

    python bench/gpu_index.py --out DIR [--budget 420] [--images 20000] [--baseline-src CHECKOUT]

Phases (DIR/summary.json is written after each, whatever happens):
0. photos: --images generated 640x480 JPEG files, written on all cores.
1. resize: `model.device_resize.resize_batch` on the GPU against `model.preprocess.resize` on the
   host, bit for bit, on random batches of mixed sizes and on generated photos as indexing decodes
   them; its time per picture against the host's.
2. index: `index_paths` over those files, end to end (files to committed
   vectors, ViT-B/16 with random weights), with this checkout and, given --baseline-src, with that
   one, in the same run: images/s, where the time went, the GPU's utilisation and power.
3. nvjpeg: where torchvision imports with CUDA, `decode_jpeg(device="cuda")` in batches of 256 on
   the same files: its rate, and how far its pixels land from Pillow's after the exact resize.
4. model: ViT-B/16 alone, bf16 at batch 256 on pixels already on the GPU: images/s and its share of
   the arithmetic floor, eager and then under torch.compile (last: compiling cannot be cut short).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_encode import H100_BF16_DENSE_TFLOPS, macs_per_image  # noqa: E402
from bench_train import GpuSampler  # noqa: E402
from phases import Phases  # noqa: E402

import model  # noqa: E402
from indexer.decode import load_for_model  # noqa: E402
from indexer.samples import write_image  # noqa: E402
from model.device_resize import resize_batch  # noqa: E402
from model.preprocess import resize  # noqa: E402

SIZE = 224
# One indexing run in a process of its own, importing Pixglot from the checkout on its PYTHONPATH.
INDEX_RUN = """
import json, sys
import model
from indexer import IndexOptions, index_paths
folder, home, name = sys.argv[1:4]
model.save(model.create(name), home + "/models/" + name)
report = index_paths([folder], "bench", name, options=IndexOptions(progress=False))
print(json.dumps({"encoded": report.encoded, "failed": report.failed, "seconds": report.seconds,
                  "timings": report.timings}))
"""


def synchronized(fn: Callable[[], object]) -> float:
    """Seconds of `fn` with the GPU's queued work included."""
    wait = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
    wait()
    start = time.perf_counter()
    fn()
    wait()
    return time.perf_counter() - start


def photo_path(folder: Path, index: int) -> Path:
    return folder / f"{index // 100:03d}" / f"photo{index:05d}.jpg"


def _write(job: tuple[Path, int]) -> None:
    path, seed = job
    write_image(path, seed, (640, 480))


class Run(Phases):
    def __init__(self, args: argparse.Namespace):
        super().__init__(args.out, args.budget)
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="pixglot-gpu-index-"))
        self.folder = self.work / "photos"
        self.device = args.device

    def resize(self) -> dict:
        rng = np.random.default_rng(0)
        mismatched = compared = 0
        for _ in range(200):
            batch = [
                rng.integers(
                    0, 256, (int(rng.integers(1, 700)), int(rng.integers(1, 700)), 3), dtype=np.uint8
                )
                for _ in range(int(rng.integers(1, 9)))
            ]
            got = resize_batch(batch, SIZE, self.device).cpu().numpy()
            mismatched += int(np.count_nonzero(got != np.stack([resize(p, SIZE) for p in batch])))
            compared += got.size
        decoded = [np.asarray(load_for_model(str(photo_path(self.folder, i)), SIZE)) for i in range(256)]
        host = np.stack([resize(p, SIZE) for p in decoded])
        device = resize_batch(decoded, SIZE, self.device)
        mismatched += int(np.count_nonzero(device.cpu().numpy() != host))
        compared += host.size
        start = time.perf_counter()
        for picture in decoded:
            resize(picture, SIZE)
        host_ms = (time.perf_counter() - start) / len(decoded) * 1000
        device_ms = min(synchronized(lambda: resize_batch(decoded, SIZE, self.device)) for _ in range(5))
        result = {
            "values_compared": compared,
            "values_different": mismatched,
            "decoded_size": list(decoded[0].shape),
            "host_ms_per_picture": round(host_ms, 3),
            "device_ms_per_picture_batch_256": round(device_ms / len(decoded) * 1000, 4),
        }
        self.summary["resize"] = result
        return result

    def photos(self) -> None:
        jobs = [(photo_path(self.folder, i), i) for i in range(self.args.images)]
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(_write, jobs, chunksize=64))
        self.summary["photos"] = {"files": len(jobs), "bytes": sum(p.stat().st_size for p, _ in jobs)}

    def index(self, name: str, source: Path) -> dict:
        home = self.work / f"home-{name}"
        (home / "models").mkdir(parents=True)
        # The checkout first; what the caller's PYTHONPATH adds (e.g. carried wheels) after it.
        path = os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PIXGLOT_HOME": str(home), "PYTHONPATH": path}
        sampler = GpuSampler()
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", INDEX_RUN, str(self.folder), str(home), self.args.model],
            env=env, capture_output=True, text=True, timeout=max(30, self.left() - 60),
        )  # fmt: skip
        gpu = sampler.summary(started)
        if done.returncode:
            raise RuntimeError(f"indexing with {source} failed:\n{done.stderr[-3000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        result = {
            "source": str(source),
            "images_per_s": round(report["encoded"] / report["seconds"], 1),
            **report,
            "gpu": gpu,
        }
        self.summary.setdefault("index", {})[name] = result
        return result

    def nvjpeg(self) -> dict:
        try:
            from torchvision.io import ImageReadMode, decode_jpeg
        except Exception as err:  # any failure to import is the answer of this phase
            self.summary["nvjpeg"] = {"available": False, "why": f"{type(err).__name__}: {err}"}
            return self.summary["nvjpeg"]
        files = [photo_path(self.folder, i).read_bytes() for i in range(min(2048, self.args.images))]
        datas = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in files]
        decode_jpeg(datas[:8], mode=ImageReadMode.RGB, device=self.device)
        batches = [datas[i : i + 256] for i in range(0, len(datas), 256)]
        seconds = synchronized(
            lambda: [decode_jpeg(b, mode=ImageReadMode.RGB, device=self.device) for b in batches]
        )
        differences = []
        for file, data in zip(files[:256], datas[:256], strict=True):
            gpu = decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device).permute(1, 2, 0).cpu().numpy()
            exact = resize(np.asarray(Image.open(io.BytesIO(file)).convert("RGB")), SIZE)
            differences.append(np.abs(resize(np.ascontiguousarray(gpu), SIZE).astype(int) - exact))
        stacked = np.stack(differences)
        result = {
            "available": True,
            "images_per_s": round(len(datas) / seconds, 1),
            "mean_abs_grey_levels_after_resize": round(float(stacked.mean()), 4),
            "max_abs_grey_levels_after_resize": int(stacked.max()),
            "share_of_values_different": round(float(np.count_nonzero(stacked)) / stacked.size, 4),
        }
        self.summary["nvjpeg"] = result
        return result

    def network(self) -> dict:
        encoder = model.create(self.args.model, device=self.device)
        arch = encoder.config["architecture"]
        size = arch["image_size"]
        pixels = torch.rand((256, size, size, 3), device=self.device) * 2 - 1
        floor = H100_BF16_DENSE_TFLOPS * 1e12 / (2 * macs_per_image(arch))
        result: dict = {"floor_images_per_s_at_h100_peak": round(floor)}

        def rate(runner: torch.nn.Module) -> float:
            def forward() -> None:
                with torch.inference_mode(), torch.autocast(self.device, dtype=torch.bfloat16):
                    runner(pixels.permute(0, 3, 1, 2), rows=None)

            forward()
            return 256 / min(synchronized(forward) for _ in range(5))

        for name, runner in (
            ("eager", lambda: encoder.net),
            ("compiled", lambda: torch.compile(encoder.net)),
        ):
            images_per_s = rate(runner())
            result[name] = {"images_per_s": round(images_per_s), "of_floor": round(images_per_s / floor, 3)}
            self.summary["model"] = result
            self.write_summary()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=420, help="seconds for everything")
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--model", default="clippo-b16", help="shipped config (random weights)")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script itself")
    parser.add_argument("--baseline-src", type=Path, help="another checkout to index the same files with")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("PyTorch sees no CUDA device")
    run = Run(args)
    run.summary["machine"] = {
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    try:
        run.phase("photos", run.photos)
        run.phase("resize", run.resize)
        run.phase("index", run.index, "this", REPO)
        if args.baseline_src:
            run.phase("index-baseline", run.index, "baseline", args.baseline_src.resolve())
        run.phase("nvjpeg", run.nvjpeg)
        run.phase("model", run.network)
    finally:
        run.summary["left_seconds"] = round(run.left(), 1)
        run.write_summary()


if __name__ == "__main__":
    main()
