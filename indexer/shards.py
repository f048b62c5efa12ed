"""Parquet vector shards: the source of truth for a collection's vectors under one model.

A shard holds rows (id int64, content_hash string, vector fixed-size list of float32). The id is
the image's row id in the database. Files are written to a temporary name, fsynced and renamed,
so a shard is either complete or absent; the database row that lists it is committed after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ground.errors import FileFormatError

TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class ShardData:
    ids: np.ndarray  # int64 (n,)
    hashes: list[str]
    vectors: np.ndarray  # float32 (n, dim)


def shard_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.int64()),
            ("content_hash", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
        ]
    )


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp_path)`, fsync the file, rename it over `path`, fsync the folder."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


# Arrays are built from buffers: pa.array() and pq.read_table() import pandas (a second or two
# per process) only to check whether they were handed a pandas object.
def _int64_array(values: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def _string_array(texts: list[str]) -> pa.Array:
    encoded = [t.encode() for t in texts]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def _vector_array(vectors: np.ndarray) -> pa.Array:
    values = pa.Array.from_buffers(pa.float32(), vectors.size, [None, pa.py_buffer(vectors.reshape(-1))])
    return pa.FixedSizeListArray.from_arrays(values, vectors.shape[1])


def _numpy(array: pa.Array, dtype: type) -> np.ndarray:
    """A read-only numpy view of a null-free primitive array (Array.to_numpy imports pandas too)."""
    values = np.frombuffer(array.buffers()[1], dtype=dtype)
    return values[array.offset : array.offset + len(array)]


class ShardStore:
    """The shard files of one (collection, model) pair in one folder."""

    def __init__(self, folder: Path, dim: int):
        self.folder = folder
        self.dim = dim

    def write(self, ids: np.ndarray, hashes: list[str], vectors: np.ndarray) -> str:
        """Write one shard durably; returns its file name."""
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim) or len(hashes) != len(ids):
            raise ValueError(f"shard rows disagree: {len(ids)} ids, {len(hashes)} hashes, {vectors.shape}")
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{int(ids.min()):012d}-{int(ids.max()):012d}-{uuid.uuid4().hex[:8]}.parquet"
        table = pa.Table.from_arrays(
            [_int64_array(ids), _string_array(hashes), _vector_array(vectors)], schema=shard_schema(self.dim)
        )
        atomic_write(
            self.folder / name,
            # Vectors do not compress; the hashes barely do. Skipping compression keeps reads fast,
            # and skipping dictionary encoding (a search for repeated floats, which embeddings never
            # have) makes the write about 6x faster: most of a commit's time before.
            lambda tmp: pq.write_table(table, tmp, compression="none", use_dictionary=False),
        )
        return name

    def path(self, name: str) -> Path:
        return self.folder / name

    def read(self, name: str, ids: Iterable[int] | None = None, with_vectors: bool = True) -> ShardData:
        path = self.path(name)
        columns = ["id", "content_hash", "vector"] if with_vectors else ["id", "content_hash"]
        try:
            table = pq.ParquetFile(path).read(columns=columns)
        except (OSError, pa.ArrowException) as err:
            raise FileFormatError(
                path, f"cannot read vector shard ({err}); run `pixglot index rebuild`"
            ) from err
        shard_ids = _numpy(table.column("id").combine_chunks(), np.int64)
        keep = None
        if ids is not None:
            keep = np.isin(shard_ids, np.fromiter(ids, dtype=np.int64))
            shard_ids = shard_ids[keep]
        hashes = table.column("content_hash").to_pylist()
        if keep is not None:
            hashes = [h for h, k in zip(hashes, keep, strict=True) if k]
        vectors = np.empty((len(shard_ids), self.dim), np.float32)
        if with_vectors:
            column = table.column("vector").combine_chunks()
            if column.type.list_size != self.dim:
                raise FileFormatError(
                    path, f"vectors have {column.type.list_size} dimensions, expected {self.dim}"
                )
            flat = _numpy(column.flatten(), np.float32).reshape(-1, self.dim)
            vectors = flat[keep] if keep is not None else flat
        return ShardData(shard_ids, hashes, np.ascontiguousarray(vectors, dtype=np.float32))

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)
