"""Rendered texts on disk: each distinct text drawn once per renderer, then read back memory-mapped.

Training shows every caption many times and evaluation reads the same queries again, while a
renderer's pixels depend only on its config, its font files and its code. So the texts a model reads
are drawn once, on all cores, and kept as the model reads them: the patch rows that hold text (with
`trim`; the whole canvas without), one gray channel (renderers draw in gray).

    cache = TextCache(renderer_config, trim=True)        # PIXGLOT_HOME/cache/rendered-texts/<key>/
    texts = cache.get(["a cat", "кошка"])                # RenderedTexts, in the order asked
    texts.image(1)    # == renderer.render_for_model(["кошка"], trim=True)[0][0], pixel for pixel

The key of a cache directory covers the renderer's resolved config, `trim`, the bytes of every font
file the renderer reads and the source of the rendering package: a changed renderer, font file or
canvas gets another directory and can never read stale pixels.

A directory holds segments, one per batch of texts drawn together: `<name>.rows`, the texts' patch
rows back to back (uint8, rows x patch x width, row 0 blank), and `<name>.parquet` with each text's
first row and row count. Each file is written under a temporary name and renamed when complete, the
index last, so a segment without its index is unfinished and ignored; any process may add one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

import rendering
from ground.atomic import write_atomic
from ground.errors import FileFormatError, PixglotError
from ground.home import cache_dir
from ground.processes import available_cores, worker_pool

_CODE = Path(__file__).parent
# Texts per task of a worker process; below a few tasks' worth, rendering in-process is quicker
# than starting the workers.
_CHUNK = rendering.BATCH
_MIN_TEXTS_FOR_WORKERS = 8 * _CHUNK


@dataclass(frozen=True)
class RenderedTexts:
    """Texts as a model reads them: text i is rows[start[i] : start[i] + count[i]], stacked."""

    rows: np.ndarray  # (R, patch, width) uint8, one gray channel; row 0 is blank background
    start: np.ndarray  # (n,) int64
    count: np.ndarray  # (n,) int64, patch rows of each text (at least 1)

    def __len__(self) -> int:
        return len(self.start)

    def image(self, i: int) -> np.ndarray:
        """Text i as `Renderer.render_for_model` draws it: (count * patch) x width x 3 uint8."""
        rows = self.rows[self.start[i] : self.start[i] + self.count[i]]
        gray = rows.reshape(-1, rows.shape[2])
        return np.repeat(gray[:, :, None], 3, axis=2)


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _code_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted([*_CODE.glob("*.py"), *_CODE.glob("*.toml")]):
        digest.update(f"{path.name}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(renderer: rendering.Renderer, trim: bool) -> str:
    """What the pixels depend on, hashed: config, trimming, font files' bytes, rendering code."""
    fonts = []
    for path in renderer.source_files():
        stat = path.stat()
        fonts.append([path.name, _file_digest(str(path), stat.st_size, stat.st_mtime_ns)])
    identity = {
        "style": renderer.style,
        "config": renderer.config,
        "trim": trim,
        "fonts": fonts,
        "code": _code_digest(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _draw(config: dict, trim: bool, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Worker task: the texts' patch rows back to back (rows x patch x width, gray) and each one's count."""
    renderer = rendering.shared_renderer(config)
    drawn = renderer.render_for_model(texts, trim)
    patch, grid = renderer.patch_size, renderer.image_size[0] // renderer.patch_size
    counts = np.array([grid if rows is None else rows for _, rows in drawn], np.int64)
    pixels = np.concatenate([image for image, _ in drawn]) if drawn else np.zeros((0, 0, 3), np.uint8)
    gray = pixels[..., 0]
    if not (np.array_equal(gray, pixels[..., 1]) and np.array_equal(gray, pixels[..., 2])):
        raise PixglotError(
            f"the {renderer.style} renderer drew colour; the rendered-text cache keeps one gray channel"
        )
    return gray.reshape(-1, patch, pixels.shape[1]), counts


@dataclass
class _Segment:
    name: str
    rows: np.ndarray  # memory-mapped, copy-on-write: readable as a writable array, never written back
    texts: list[str]
    start: np.ndarray
    count: np.ndarray


class TextCache:
    """The rendered-text cache of one renderer (a config, as stored in a model's config.json)."""

    def __init__(self, renderer_config: dict, trim: bool, directory: Path | None = None):
        self._config = dict(renderer_config)
        self.renderer = rendering.shared_renderer(self._config)
        self.trim = trim
        self.directory = directory or cache_dir("rendered-texts") / cache_key(self.renderer, trim)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._width = self.renderer.image_size[1]
        self._patch = self.renderer.patch_size

    def _segments(self) -> list[_Segment]:
        segments = []
        for index in sorted(self.directory.glob("*.parquet")):
            try:
                table = pq.read_table(index)
                texts = table.column("text").to_pylist()
                start = table.column("start").to_numpy()
                count = table.column("count").to_numpy()
                total = int(table.schema.metadata[b"rows"])
                rows = np.memmap(
                    index.with_suffix(".rows"), np.uint8, "c", shape=(total, self._patch, self._width)
                )
            except (OSError, ValueError, KeyError, pa.ArrowException) as err:
                raise FileFormatError(
                    index, f"damaged rendered-text cache segment ({err}); delete {self.directory} to redraw"
                ) from None
            segments.append(_Segment(index.stem, rows, texts, start, count))
        return segments

    def get(self, texts: Sequence[str], progress: bool = False) -> RenderedTexts:
        """The texts' pixels, in the order given (repeats allowed); texts not yet in the cache are
        drawn first, on all cores for many of them, and added as a new segment."""
        segments = self._segments()
        where: dict[str, tuple[int, int]] = {}  # text -> (segment, position in it)
        for s, segment in enumerate(segments):
            for position, text in enumerate(segment.texts):
                where.setdefault(text, (s, position))
        missing = [t for t in dict.fromkeys(texts) if t not in where]
        if missing:
            segments.append(self._draw_segment(missing, progress))
            where.update((t, (len(segments) - 1, i)) for i, t in enumerate(missing))
        found = np.array([where[t] for t in texts], np.int64).reshape(-1, 2)
        used = np.unique(found[:, 0])
        if len(used) == 1:  # the common case, one segment: its rows are used in place
            segment = segments[int(used[0])]
            return RenderedTexts(segment.rows, segment.start[found[:, 1]], segment.count[found[:, 1]])
        return self._gathered(segments, found)

    def _gathered(self, segments: list[_Segment], found: np.ndarray) -> RenderedTexts:
        """Texts from several segments, copied into one array."""
        count = np.array([segments[s].count[p] for s, p in found.tolist()], np.int64)
        start = np.concatenate([[1], 1 + np.cumsum(count)[:-1]]).astype(np.int64)
        rows = np.empty((1 + int(count.sum()), self._patch, self._width), np.uint8)
        rows[0] = segments[0].rows[0]
        for (s, p), first, n in zip(found.tolist(), start.tolist(), count.tolist(), strict=True):
            source = int(segments[s].start[p])
            rows[first : first + n] = segments[s].rows[source : source + n]
        return RenderedTexts(rows, start, count)

    def _draw_segment(self, texts: list[str], progress: bool) -> _Segment:
        name = hashlib.sha256("\0".join(texts).encode("utf-8", "surrogatepass")).hexdigest()[:24]
        rows_path = self.directory / f"{name}.rows"
        blank, _ = _draw(self._config, self.trim, [""])
        counts = []

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(blank[:1].tobytes())
                for pixels, count in self._drawn(texts, progress):
                    f.write(pixels.tobytes())
                    counts.append(count)
                f.flush()
                os.fsync(f.fileno())

        write_atomic(rows_path, write)
        count = np.concatenate(counts)
        start = np.concatenate([[1], 1 + np.cumsum(count)[:-1]]).astype(np.int64)
        total = 1 + int(count.sum())
        table = pa.table({"text": texts, "start": start, "count": count}).replace_schema_metadata(
            {"rows": str(total), "patch": str(self._patch), "width": str(self._width)}
        )
        write_atomic(self.directory / f"{name}.parquet", lambda tmp: pq.write_table(table, tmp))
        rows = np.memmap(rows_path, np.uint8, "c", shape=(total, self._patch, self._width))
        return _Segment(name, rows, texts, start, count)

    def _drawn(self, texts: list[str], progress: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        chunks = [texts[i : i + _CHUNK] for i in range(0, len(texts), _CHUNK)]
        bar = tqdm(total=len(texts), desc="rendering texts", unit=" texts", disable=not progress)
        task = functools.partial(_draw, self._config, self.trim)
        workers = min(available_cores(), len(chunks))
        if len(texts) < _MIN_TEXTS_FOR_WORKERS or workers < 2:
            results = map(task, chunks)
            yield from _counted(results, bar)
            return
        # The workers load the compiled loops from numba's disk cache, which the blank render above filled.
        with worker_pool(workers) as pool:
            yield from _counted(pool.map(task, chunks), bar)


def _counted(
    results: Iterable[tuple[np.ndarray, np.ndarray]], bar: tqdm
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    with bar:
        for pixels, count in results:
            bar.update(len(count))
            yield pixels, count
