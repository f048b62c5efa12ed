"""Training shards from caption shards (key, text, language, source) and images found by key.

The output is what the trainer reads (columns key, image, text, language, and source kept beside
them), one row per caption, the rows of one image next to each other. Caption files are not in
image order and can be far larger than memory, so the build goes in two passes:

1. Bucketing: every caption whose image exists is appended to one of a few hundred work files by a
   hash of its key (in `<out>/.<prefix>.work/`); captions without an image are counted and left out.
2. Per bucket: its rows sorted by key, cut into shards `<out>/<prefix>-BBB-NNNN.parquet`, each
   image's bytes read once and stored once per row group (a dictionary column), so a shard holds
   an image's bytes once however many captions it has.

A rerun redoes an unfinished first pass, then skips the buckets already done and the shards already
written. A change of captions, languages, shard size or the images at hand starts the build over.
"""

from __future__ import annotations

import json
import re
import shutil
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from ground.atomic import write_atomic, write_bytes_atomic
from ground.errors import InputError

CAPTION_SCHEMA = pa.schema(
    [("key", pa.string()), ("text", pa.string()), ("language", pa.string()), ("source", pa.string())]
)
# The image column is written dictionary-encoded but read back as plain binary: store_schema=False
# keeps the Arrow dictionary type out of the file, so readers see the training shards' schema.
_WRITE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("image", pa.dictionary(pa.int32(), pa.binary())),
        ("text", pa.string()),
        ("language", pa.string()),
        ("source", pa.string()),
    ]
)
ROWS_PER_BUCKET = 500_000
MAX_BUCKETS = 512

ImageLookup = Callable[[str], "Path | None"]


@dataclass
class BuildSummary:
    shards: list[Path]
    rows: int  # captions written
    images: int  # distinct images written
    missing_images: int  # images the captions name that were not found
    missing_rows: int  # captions left out because their image was not found
    reused: int  # shards already there from an earlier run
    languages: list[str] = field(default_factory=list)


def build(
    captions: Sequence[Path],
    out: str | Path,
    images: ImageLookup,
    *,
    prefix: str,
    languages: Sequence[str] | None = None,
    images_state: str = "",
    rows_per_shard: int = 10_000,
    rows_per_group: int = 1_000,
    progress: bool = True,
) -> BuildSummary:
    """Write the training shards of `captions` under `out`; see the module docstring.

    `images(key)` gives the image file of a key, None when there is none. `images_state` names the
    images at hand (e.g. how many): a different value on a rerun builds the shards anew.
    """
    if rows_per_shard < 1 or rows_per_group < 1:
        raise InputError(
            f"rows per shard ({rows_per_shard}) and per row group ({rows_per_group}) must be at least 1"
        )
    if not captions:
        raise InputError("no caption shards to build training shards from")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    total = sum(pq.read_metadata(path).num_rows for path in captions)
    layout = {
        "captions": [[path.name, path.stat().st_size] for path in captions],
        "languages": sorted(languages) if languages else None,
        "images": images_state,
        "rows_per_shard": rows_per_shard,
        "rows_per_group": rows_per_group,
        "buckets": min(MAX_BUCKETS, max(1, -(-total // ROWS_PER_BUCKET))),
    }
    manifest = out / f".{prefix}.json"
    work = out / f".{prefix}.work"
    state = _read_json(manifest)
    if state.get("layout") != layout:
        _clear(out, prefix, work)
        state = {"layout": layout}
        write_bytes_atomic(manifest, json.dumps(state).encode())
    if "done" in state:
        shards = _shards(out, prefix)
        if len(shards) == state["shards"]:
            return BuildSummary(shards, **state["done"], reused=len(shards))
        _clear(out, prefix, work)  # a shard was deleted since: its bucket's rows are gone, build anew
        write_bytes_atomic(manifest, json.dumps({"layout": layout}).encode())

    stats = _bucket_pass(captions, work, images, languages, layout["buckets"], progress)
    reused = lost_rows = lost_images = 0
    for bucket in tqdm(range(layout["buckets"]), desc="training shards", disable=not progress):
        r, rows, found = _build_bucket(work, out, prefix, bucket, images, rows_per_shard, rows_per_group)
        reused, lost_rows, lost_images = reused + r, lost_rows + rows, lost_images + found
    done = {
        "rows": stats["rows"] - lost_rows,
        "images": stats["images"] - lost_images,
        "missing_images": stats["missing_images"] + lost_images,
        "missing_rows": stats["missing_rows"] + lost_rows,
        "languages": stats["languages"],
    }
    shards = _shards(out, prefix)
    write_bytes_atomic(manifest, json.dumps({"layout": layout, "done": done, "shards": len(shards)}).encode())
    shutil.rmtree(work, ignore_errors=True)
    return BuildSummary(shards, **done, reused=reused)


def _shards(out: Path, prefix: str) -> list[Path]:
    name = re.compile(rf"{re.escape(prefix)}-\d{{3}}-\d{{4,}}\.parquet")
    return sorted(path for path in out.glob(f"{prefix}-*.parquet") if name.fullmatch(path.name))


def _clear(out: Path, prefix: str, work: Path) -> None:
    for stale in _shards(out, prefix):
        stale.unlink()
    shutil.rmtree(work, ignore_errors=True)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def bucket_of(key: str, buckets: int) -> int:
    """A fixed bucket per key, the same in every run and on every machine."""
    return zlib.crc32(key.encode("utf-8")) % buckets


# --- pass 1: bucketing ----------------------------------------------------------------------------


def _bucket_pass(
    captions: Sequence[Path],
    work: Path,
    images: ImageLookup,
    languages: Sequence[str] | None,
    buckets: int,
    progress: bool,
) -> dict:
    """Spread the captions with an image over the work files; returns what it kept and left out."""
    finished = work / "buckets.json"
    stats = _read_json(finished)
    if stats:
        return stats
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    writers: dict[int, pq.ParquetWriter] = {}
    missing: set[str] = set()  # the keys without an image (those with one are counted per bucket)
    rows = missing_rows = 0
    found_languages: set[str] = set()
    try:
        for path in tqdm(captions, desc="grouping captions by image", disable=not progress):
            table = _read_captions(path, languages)
            if not len(table):
                continue
            keys = table.column("key").unique()
            names = keys.to_pylist()
            present = np.array([key not in missing and images(key) is not None for key in names], dtype=bool)
            missing.update(key for key, there in zip(names, present, strict=True) if not there)
            bucket = np.array([bucket_of(key, buckets) for key in names], dtype=np.int64)
            position = pc.index_in(table.column("key"), value_set=keys).to_numpy()
            keep = present[position]
            missing_rows += int((~keep).sum())
            table, row_bucket = table.filter(pa.array(keep)), bucket[position][keep]
            rows += len(table)
            found_languages.update(table.column("language").unique().to_pylist())
            _append(table, row_bucket, work, writers)
    finally:
        for writer in writers.values():
            writer.close()
    # Keys never share a bucket, so the distinct keys of each bucket add up to the images.
    with_image = sum(
        len(pq.read_table(path, columns=["key"]).column("key").unique())
        for path in work.glob("bucket-*.parquet")
    )
    stats = {
        "rows": rows,
        "images": with_image,
        "missing_images": len(missing),
        "missing_rows": missing_rows,
        "languages": sorted(found_languages),
    }
    write_bytes_atomic(finished, json.dumps(stats).encode())
    return stats


def _read_captions(path: Path, languages: Sequence[str] | None) -> pa.Table:
    table = pq.read_table(path, columns=CAPTION_SCHEMA.names)
    if languages:
        table = table.filter(pc.is_in(table.column("language"), value_set=pa.array(list(languages))))
    return table


def _append(
    table: pa.Table, row_bucket: np.ndarray, work: Path, writers: dict[int, pq.ParquetWriter]
) -> None:
    order = np.argsort(row_bucket, kind="stable")
    table, row_bucket = table.take(pa.array(order)), row_bucket[order]
    starts = np.flatnonzero(np.r_[True, row_bucket[1:] != row_bucket[:-1]])
    for start, end in zip(starts, [*starts[1:], len(row_bucket)], strict=True):
        bucket = int(row_bucket[start])
        if bucket not in writers:
            writers[bucket] = pq.ParquetWriter(_work_file(work, bucket), CAPTION_SCHEMA)
        writers[bucket].write_table(table.slice(start, end - start))


def _work_file(work: Path, bucket: int) -> Path:
    return work / f"bucket-{bucket:03d}.parquet"


# --- pass 2: shards -------------------------------------------------------------------------------


def shard_name(prefix: str, bucket: int, number: int) -> str:
    return f"{prefix}-{bucket:03d}-{number:04d}.parquet"


def _build_bucket(
    work: Path,
    out: Path,
    prefix: str,
    bucket: int,
    images: ImageLookup,
    rows_per_shard: int,
    rows_per_group: int,
) -> tuple[int, int, int]:
    """(shards reused, rows and images left out because an image went missing since pass 1)."""
    done = work / f"bucket-{bucket:03d}.done"
    source = _work_file(work, bucket)
    if done.exists() or not source.exists():
        return 0, 0, 0
    table = pq.read_table(source).sort_by([("key", "ascending")])
    reused = lost_rows = lost_images = 0
    for number, start in enumerate(range(0, len(table), rows_per_shard)):
        path = out / shard_name(prefix, bucket, number)
        if path.exists():
            reused += 1
            continue
        chunk = table.slice(start, rows_per_shard)
        keys = chunk.column("key").to_pylist()
        found = _read_images(keys, images)
        keep = np.array([key in found for key in keys], dtype=bool)
        lost_rows += int((~keep).sum())
        lost_images += len(set(keys)) - len(found)
        _write_shard(path, chunk.filter(pa.array(keep)), found, rows_per_group)
    done.touch()
    return reused, lost_rows, lost_images


def _read_images(keys: list[str], images: ImageLookup) -> dict[str, bytes]:
    found = {}
    for key in dict.fromkeys(keys):
        path = images(key)
        if path is None:
            continue
        try:
            found[key] = path.read_bytes()
        except OSError:
            continue  # deleted or unreadable since the first pass: left out like a missing one
    return found


def _write_shard(path: Path, table: pa.Table, found: dict[str, bytes], rows_per_group: int) -> None:
    def write(tmp: str) -> None:
        with pq.ParquetWriter(
            tmp, _WRITE_SCHEMA, compression="zstd", store_schema=False, dictionary_pagesize_limit=1 << 30
        ) as writer:
            for start in range(0, len(table), rows_per_group):
                writer.write_table(_with_images(table.slice(start, rows_per_group), found))

    write_atomic(path, write)


def _with_images(table: pa.Table, found: dict[str, bytes]) -> pa.Table:
    """The row group with its image column: each distinct image once, rows pointing at it."""
    keys = table.column("key").combine_chunks()
    distinct = keys.unique()
    values = pa.array([found[key] for key in distinct.to_pylist()], pa.binary())
    indices = pc.index_in(keys, value_set=distinct).cast(pa.int32())
    return pa.table(
        {
            "key": keys,
            "image": pa.DictionaryArray.from_arrays(indices, values),
            "text": table.column("text"),
            "language": table.column("language"),
            "source": table.column("source"),
        },
        schema=_WRITE_SCHEMA,
    )
