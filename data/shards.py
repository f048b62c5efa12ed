"""Training shards from a captions dataset: Parquet files with one row per (image, caption).

Columns: key (string), image (binary: the encoded image file as is), text (string), language
(string). Rows are grouped by image so that zstd compresses the repeated image bytes of one page
to almost nothing; readers shuffle rows themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from data import captions as captions_io
from ground.atomic import write_atomic
from ground.errors import InputError, PixglotError

SCHEMA = pa.schema(
    [("key", pa.string()), ("image", pa.binary()), ("text", pa.string()), ("language", pa.string())]
)
SPLITS = ("train", "test", "all")


@dataclass
class ExportSummary:
    shards: list[Path]
    rows: int
    images: int
    languages: list[str]


def _write_shard(path: Path, rows: dict[str, list]) -> None:
    table = pa.Table.from_pydict(rows, schema=SCHEMA)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def export_parquet(
    directory: str | Path,
    out: str | Path,
    *,
    split: str = "train",
    languages: Sequence[str] | None = None,
    rows_per_shard: int = 10_000,
    prefix: str | None = None,
) -> ExportSummary:
    """Write `<out>/<prefix>-<split>-NNNNN.parquet` shards; earlier shards with that name are replaced.

    Any data issue (bad line, missing image, unknown language...) stops the export: training data
    is not silently thinned.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if rows_per_shard < 1:
        raise InputError(f"rows_per_shard must be at least 1, got {rows_per_shard}")
    dataset = captions_io.load(directory, languages, None if split == "all" else split)
    if dataset.issues:
        shown = "; ".join(map(str, dataset.issues[:5]))
        raise PixglotError(f"{directory}: {len(dataset.issues)} data issue(s), nothing exported: {shown}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{prefix or dataset.name.split('/')[0]}-{split}"
    for stale in out.glob(f"{stem}-*.parquet"):
        stale.unlink()

    shards: list[Path] = []
    rows: dict[str, list] = {name: [] for name in SCHEMA.names}
    total = images = 0

    def flush() -> None:
        path = out / f"{stem}-{len(shards):05d}.parquet"
        _write_shard(path, rows)
        shards.append(path)
        for column in rows.values():
            column.clear()

    for index, key in enumerate(dataset.keys):
        per_language = [(lang, dataset.captions[lang].get(index, [])) for lang in dataset.languages]
        if not any(texts for _, texts in per_language):
            continue
        image = dataset.image_paths[index].read_bytes()
        images += 1
        for language, texts in per_language:
            for text in texts:
                rows["key"].append(key)
                rows["image"].append(image)
                rows["text"].append(text)
                rows["language"].append(language)
                total += 1
                if len(rows["key"]) >= rows_per_shard:
                    flush()
    if rows["key"] or not shards:
        flush()
    return ExportSummary(shards=shards, rows=total, images=images, languages=list(dataset.languages))
