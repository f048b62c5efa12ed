"""Embeddings (and the metrics computed from them) cached on disk, so a second evaluation costs seconds.

Embeddings live in PIXGLOT_HOME/cache/embeddings/<model key>/ and are written atomically (temporary
file, then rename). The model key covers the weights' fingerprint and the whole model config
(renderer and preprocessing included); the data key covers the texts themselves, or each image's
file name, size and modification time. Metrics live in PIXGLOT_HOME/cache/metrics/, keyed by the
bytes of the embeddings they were computed from. Anything unreadable in the cache is recomputed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from ground.atomic import write_atomic
from ground.home import cache_dir

if TYPE_CHECKING:
    from model import Encoder

_IMAGE_BATCHES = 256  # images per encoder call, so progress shows and one bad file costs little


def model_key(encoder: Encoder) -> str:
    config = json.dumps(encoder.config, sort_keys=True, default=str)
    # bf16 and int8 leave the weights (and so the fingerprint) alone but change the embeddings.
    arithmetic = f"{encoder.device.type} {encoder.precision} {encoder.quantize}"
    return hashlib.sha256(f"{encoder.fingerprint}\n{config}\n{arithmetic}".encode()).hexdigest()[:32]


def _digest(items: Sequence[str]) -> str:
    h = hashlib.sha256()
    for item in items:
        data = item.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:32]


def _cache_file(encoder: Encoder, kind: str, key: str) -> Path:
    directory = cache_dir("embeddings") / model_key(encoder)
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{kind}-{key}.npz"


def _save_atomic(path: Path, **arrays: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    write_atomic(path, write)


def _load(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError):
        return None  # a damaged cache entry is recomputed, never trusted


def text_embeddings(encoder: Encoder, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """(len(texts), dim) float32; each distinct text is encoded once and cached."""
    unique = list(dict.fromkeys(texts))
    path = _cache_file(encoder, "texts", _digest(unique))
    cached = _load(path)
    if cached is not None and cached.get("vectors", np.empty(0)).shape == (len(unique), encoder.dim):
        vectors = cached["vectors"]
    else:
        vectors = np.asarray(
            encoder.encode_texts(unique, batch_size=batch_size, cached=True), dtype=np.float32
        )
        _save_atomic(path, vectors=vectors)
    row = {text: i for i, text in enumerate(unique)}
    return vectors[[row[t] for t in texts]]


@dataclass
class ImageEmbeddings:
    vectors: np.ndarray  # (len(ok), dim) float32
    ok: list[int]  # input positions that were encoded
    failures: list[tuple[int, str]]  # input position, reason


def _file_identity(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path.name}\0missing"
    return f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}"


def image_embeddings(
    encoder: Encoder,
    paths: Sequence[Path],
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> ImageEmbeddings:
    """Embeddings of the image files; a file that cannot be decoded is a failure, not an exception."""
    path = _cache_file(encoder, "images", _digest([_file_identity(Path(p)) for p in paths]))
    cached = _load(path)
    if cached is not None and {"vectors", "ok", "failed", "reasons"} <= cached.keys():
        return ImageEmbeddings(
            vectors=cached["vectors"].astype(np.float32, copy=False),
            ok=[int(i) for i in cached["ok"]],
            failures=[(int(i), str(r)) for i, r in zip(cached["failed"], cached["reasons"], strict=True)],
        )
    parts, ok, failures = [], [], []
    with tqdm(total=len(paths), unit="img", desc="images", disable=not progress, leave=False) as bar:
        for start in range(0, len(paths), _IMAGE_BATCHES):
            batch = [str(p) for p in paths[start : start + _IMAGE_BATCHES]]
            encoded = encoder.encode_images_tolerant(batch, batch_size=batch_size)
            parts.append(np.asarray(encoded.vectors, dtype=np.float32).reshape(-1, encoder.dim))
            ok.extend(start + i for i in encoded.ok)
            failures.extend((start + i, str(reason)) for i, reason in encoded.failures)
            bar.update(len(batch))
    result = ImageEmbeddings(
        np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32), ok, failures
    )
    _save_atomic(
        path,
        vectors=result.vectors,
        ok=np.asarray(ok, dtype=np.int64),
        failed=np.asarray([i for i, _ in failures], dtype=np.int64),
        reasons=np.asarray([r for _, r in failures], dtype=str),
    )
    return result


METRICS_VERSION = "1"  # bump when evaluation.metrics changes what it computes


def cached_metrics(compute: Callable[..., dict], *arrays: np.ndarray, **options: object) -> dict:
    """`compute(*arrays, **options)`, or its stored result for the same arrays and options."""
    h = hashlib.sha256(
        f"{METRICS_VERSION}\n{compute.__name__}\n{json.dumps(options, sort_keys=True)}".encode()
    )
    for array in arrays:
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(array.data)
    path = cache_dir("metrics") / f"{h.hexdigest()[:40]}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        result = compute(*arrays, **options)
        write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(result), encoding="utf-8"))
        return result
