"""Encoding speed: Pixglot's encoder against a plain PyTorch forward of the same ViT-B/16 weights.

    python bench/bench_encode.py                 # ViT-B/16, batch 16, 3 interleaved rounds
    python bench/bench_encode.py --quick         # a smoke run on a small model

Rows (same random weights, same process; each round times every row once, the best round counts,
so that a busy machine slows all rows alike):
- images/s, pixels in: plain fp32 eager forward (the baseline) vs Encoder.embed_pixels at fp32,
  bf16 autocast and int8 dynamic quantisation, with the cosine between their embeddings and fp32's;
- images/s, JPEG bytes in: Encoder.encode_images (decode, resize, forward);
- texts/s for one-line queries: full canvas (text_trim off) vs trimmed (text_trim on);
- on CUDA: bf16 at batch 256, and the multiply-accumulate rate it reaches.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import model
from model.encoder import Encoder, read_shipped_config

# NVIDIA's dense (no sparsity) bf16 tensor-core peak of the H100 SXM; a floor, not a promise.
H100_BF16_DENSE_TFLOPS = 989.0
QUERIES = ["a cat on a sofa", "red bicycle", "кошка", "猫", "mountain lake at dawn", "two dogs playing"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpu}, {cores} cores{gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}; Python {platform.python_version()}"
    )


def macs_per_image(arch: dict, tokens: int | None = None) -> float:
    """Multiply-accumulates of one forward (ViT-B/16 at 224 px: 17.6 G)."""
    w, m, depth, p = arch["width"], arch["mlp_dim"], arch["depth"], arch["patch_size"]
    n = tokens or (arch["image_size"] // p) ** 2
    per_layer = n * (4 * w * w + 2 * w * m) + 2 * n * n * w
    return depth * per_layer + n * 3 * p * p * w


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((640, 480), Image.BILINEAR)  # smooth, photo-like sizes
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="clippo-b16", help="shipped model config (default clippo-b16)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=64, help="one-line texts per text timing")
    parser.add_argument("--quick", action="store_true", help="small model, one round: a smoke test")
    parser.add_argument("--cuda-only", action="store_true", help="only the GPU rows")
    args = parser.parse_args()
    if args.quick:
        args.config, args.rounds, args.batch, args.queries = "clippo-ti16", 1, 4, 8

    cuda = torch.cuda.is_available()
    config = read_shipped_config(args.config)
    if args.cuda_only:
        if not cuda:
            parser.error("--cuda-only: PyTorch sees no CUDA device")
        print(f"## Encoding speed on the GPU: {args.config}\n\nMachine: {machine()}\n")
        print(cuda_rows(config, np.random.default_rng(0), args.queries * 16))
        return 0
    trimmed = model.create(config, seed=0, device="cpu", precision="fp32")
    arch = trimmed.config["architecture"]
    net = trimmed.net  # the baseline calls it directly: fp32, eager, no Pixglot code around it
    full_text = Encoder(net, {**trimmed.config, "text_trim": False}, precision="fp32")
    variants = {
        "Encoder fp32": trimmed,
        "Encoder bf16 autocast": Encoder(net, trimmed.config, precision="bf16"),
        "Encoder int8 dynamic": Encoder(net, trimmed.config, quantize="int8"),
    }
    size = arch["image_size"]
    rng = np.random.default_rng(0)
    pixels = rng.uniform(-1, 1, (args.batch, size, size, 3)).astype(np.float32)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    jpegs = [jpeg(i) for i in range(args.batch)]
    queries = [QUERIES[i % len(QUERIES)] + f" {i}" for i in range(args.queries)]

    def baseline() -> None:
        with torch.inference_mode():
            net(x)

    jobs: dict[str, tuple[Callable[[], object], int]] = {"plain fp32 eager forward": (baseline, args.batch)}
    for name, enc in variants.items():
        jobs[f"{name}: embed_pixels"] = (lambda enc=enc: enc.embed_pixels(pixels), args.batch)
    jobs["Encoder fp32: encode_images (JPEG 640x480)"] = (lambda: trimmed.encode_images(jpegs), args.batch)
    jobs["Encoder bf16: encode_images (JPEG 640x480)"] = (
        lambda: variants["Encoder bf16 autocast"].encode_images(jpegs),
        args.batch,
    )
    jobs["texts, full canvas (fp32)"] = (lambda: full_text.encode_texts(queries), args.queries)
    jobs["texts, trimmed (fp32)"] = (lambda: trimmed.encode_texts(queries), args.queries)
    jobs["texts, trimmed (bf16)"] = (
        lambda: variants["Encoder bf16 autocast"].encode_texts(queries),
        args.queries,
    )

    for fn, _ in jobs.values():  # warm-up: allocators, oneDNN kernels, fonts
        fn()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(args.rounds):
        for name, (fn, _) in jobs.items():
            times[name].append(timed(fn))

    reference = trimmed.embed_pixels(pixels)
    cosines = {name: cosine_min(enc.embed_pixels(pixels), reference) for name, enc in variants.items()}
    base_rate = args.batch / min(times["plain fp32 eager forward"])
    print(
        f"## Encoding speed: {args.config} "
        f"(width {arch['width']}, {arch['depth']} layers, patch {arch['patch_size']})"
    )
    print()
    print(f"Machine: {machine()}")
    print(
        f"Batch {args.batch} images, {args.queries} one-line queries; "
        f"best of {args.rounds} interleaved rounds."
    )
    print()
    print("| what | items/s (best) | items/s (median) | vs plain fp32 | min cosine vs fp32 |")
    print("|---|---:|---:|---:|---:|")
    for name, (_, count) in jobs.items():
        best, median = count / min(times[name]), count / statistics.median(times[name])
        variant = next((v for v in cosines if name == f"{v}: embed_pixels"), None)
        cosine = f"{cosines[variant]:.6f}" if variant else ""
        ratio = f"{best / base_rate:.2f}x" if not name.startswith("texts") else ""
        print(f"| {name} | {best:.2f} | {median:.2f} | {ratio} | {cosine} |")
    full, trim = min(times["texts, full canvas (fp32)"]), min(times["texts, trimmed (fp32)"])
    print()
    print(f"Trimmed one-line queries: {full / trim:.1f}x the full-canvas text rate.")

    if cuda:
        print()
        print(cuda_rows(config, rng, args.queries * 16))
    return 0


def cuda_rows(config: dict, rng: np.random.Generator, n_queries: int) -> str:
    """bf16 at batch 256 on the GPU, against the arithmetic floor of the card's dense bf16 peak."""
    gpu = model.create(config, seed=0, device="cuda")  # bf16 autocast by default on CUDA
    arch = gpu.config["architecture"]
    size, batch = arch["image_size"], 256
    full = Encoder(gpu.net, {**gpu.config, "text_trim": False}, device="cuda")
    big = torch.from_numpy(rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)).cuda()
    jpegs = [jpeg(i) for i in range(batch)]
    queries = [QUERIES[i % len(QUERIES)] + f" {i}" for i in range(n_queries)]
    jobs: dict[str, tuple[Callable[[], object], int]] = {
        "images, pixels on the GPU (bf16)": (lambda: gpu._forward(big, None), batch),
        "images, JPEG 640x480 bytes in (decode in workers + bf16)": (lambda: gpu.encode_images(jpegs), batch),
        "texts, one line, full canvas (bf16)": (lambda: full.encode_texts(queries), n_queries),
        "texts, one line, trimmed (bf16)": (lambda: gpu.encode_texts(queries), n_queries),
    }
    for fn, _ in jobs.values():
        fn()
    macs = macs_per_image(arch)
    lines = [
        f"CUDA ({torch.cuda.get_device_name()}), bf16 autocast, batch {batch} "
        f"({macs / 1e9:.1f} GMAC = {2 * macs / 1e9:.1f} GFLOP per full image; floor at the "
        f"card's {H100_BF16_DENSE_TFLOPS:.0f} TFLOP/s dense bf16 peak: "
        f"{H100_BF16_DENSE_TFLOPS * 1e12 / (2 * macs):,.0f} images/s):",
        "",
        "| what | items/s (best of 5) | TFLOP/s | of peak |",
        "|---|---:|---:|---:|",
    ]
    for name, (fn, count) in jobs.items():
        rate = count / min(timed(fn) for _ in range(5))
        flops = 2 * macs * rate / 1e12 if name.startswith("images") else None
        shown = f"{flops:.0f} | {flops / H100_BF16_DENSE_TFLOPS:.0%}" if flops else " | "
        lines.append(f"| {name} | {rate:,.0f} | {shown} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
