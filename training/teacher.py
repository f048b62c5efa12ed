"""A teacher's embeddings as data: the Parquet files distillation learns from.

A distillation run never runs its teacher: the teacher's embeddings are computed once (by
`training.embed_teacher`, or by any program that writes these columns) and stored beside the data,
so the trainer needs neither the teacher's framework nor its weights, and any teacher works.

    texts:   text (string), language (string), teacher_text_emb (list of float), and optionally
             key (string or null): the image the caption belongs to
    images:  key (string), teacher_image_emb (list of float)

A text row asks the student to embed the rendered `text` as the teacher embedded it (or embedded its
English source, in a translated set). A text may appear in several rows, in several languages: each
row is one training example. A text row's key lets a run leave out the captions of the images it
holds out for evaluation. An image row names an image of the training shards by its `key`; a key
has one teacher embedding. Every vector of a set has the same length, and is finite and not zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ground.atomic import write_atomic
from ground.errors import FileFormatError, InputError
from training.data import shard_files

TEXT_COLUMNS = ("text", "language", "teacher_text_emb")
IMAGE_COLUMNS = ("key", "teacher_image_emb")
# Cosine above which two vectors of one key are the same: an image embedded in two batches differs in
# the last bits (bf16 arithmetic, other batch shapes), a different image by far more.
_SAME_VECTOR = 0.999


@dataclass(frozen=True)
class TeacherTexts:
    texts: list[str]
    languages: list[str]
    vectors: np.ndarray  # (n, dim) float32, as the teacher gave them (not normalised)
    keys: list[str | None]  # the image each caption belongs to, where the files say

    def subset(self, keep: np.ndarray) -> TeacherTexts:
        """The rows where `keep` (bool, one per row) is true."""
        return TeacherTexts(
            [t for t, k in zip(self.texts, keep, strict=True) if k],
            [lang for lang, k in zip(self.languages, keep, strict=True) if k],
            self.vectors[keep],
            [key for key, k in zip(self.keys, keep, strict=True) if k],
        )

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class TeacherImages:
    keys: list[str]
    vectors: np.ndarray  # (n, dim) float32

    def __len__(self) -> int:
        return len(self.keys)


def _vectors(path: Path, column: pa.ChunkedArray, name: str) -> np.ndarray:
    """A list<float> column as (n, dim) float32, every row checked."""
    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        raise FileFormatError(path, f"column {name!r} is {column.type}, expected a list of floats")
    if not pa.types.is_floating(column.type.value_type):
        raise FileFormatError(path, f"column {name!r} holds {column.type.value_type}, expected floats")
    if column.null_count:
        raise FileFormatError(path, f"column {name!r} has {column.null_count} empty (null) vector(s)")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    differing = np.flatnonzero(lengths != lengths[0]) if len(lengths) else []
    if len(differing):
        row = int(differing[0])
        raise FileFormatError(
            path,
            f"column {name!r}: row {row} has {lengths[row]} values, row 0 has {lengths[0]}; "
            "every vector of a teacher has the same length",
        )
    if len(lengths) and lengths[0] == 0:
        raise FileFormatError(path, f"column {name!r}: the vectors are empty")
    dim = int(lengths[0]) if len(lengths) else 0
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    vectors = np.asarray(flat, np.float32).reshape(len(lengths), dim)
    bad = ~np.isfinite(vectors).all(axis=1) | ~np.any(vectors != 0, axis=1)
    if bad.any():
        raise FileFormatError(
            path, f"column {name!r}: row {int(np.flatnonzero(bad)[0])} is not finite or is all zeros"
        )
    return vectors


def read_columns(
    path: Path,
    required: Sequence[str],
    optional: Sequence[str] = (),
    why: Callable[[list[str]], str] = lambda missing: "",
) -> pa.Table:
    """The `required` columns of a Parquet file, and those of `optional` it has; a file that cannot
    be read, or lacks a required column, is a FileFormatError naming it (`why(missing)` is added to
    the latter)."""
    try:
        names = pq.read_schema(path).names
        missing = [c for c in required if c not in names]
        if missing:
            raise FileFormatError(path, f"lacks the column(s) {', '.join(missing)}{why(missing)}")
        return pq.read_table(path, columns=[*required, *(c for c in optional if c in names)])
    except (OSError, pa.ArrowException) as err:
        raise FileFormatError(path, f"not a readable Parquet file ({err})") from None


def _read(
    paths: Sequence[str | Path], columns: tuple[str, ...], what: str, optional: tuple[str, ...] = ()
) -> tuple[dict, np.ndarray]:
    """The string columns (lists; an `optional` one absent from a file is None there, and may hold
    nulls) and the vector column of every file, the vectors' lengths checked across files."""
    strings: dict[str, list] = {name: [] for name in (*columns[:-1], *optional)}
    parts: list[np.ndarray] = []
    first: Path | None = None
    for path in shard_files(paths, what):
        table = read_columns(path, columns, optional, lambda _: f" ({what} have {', '.join(columns)})")
        for name in strings:
            if name in optional and name not in table.column_names:
                strings[name] += [None] * table.num_rows
                continue
            column = table.column(name)
            if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
                raise FileFormatError(path, f"column {name!r} is {column.type}, expected strings")
            if column.null_count and name not in optional:
                raise FileFormatError(path, f"column {name!r} has {column.null_count} empty (null) value(s)")
            strings[name] += column.to_pylist()
        vectors = _vectors(path, table.column(columns[-1]), columns[-1])
        if parts and vectors.shape[1] != parts[0].shape[1] and len(vectors):
            raise FileFormatError(
                path, f"vectors of {vectors.shape[1]} values, but {first} has {parts[0].shape[1]}"
            )
        if len(vectors):
            first = first or path
            parts.append(vectors)
    if not parts:
        raise InputError(f"no {what} in {', '.join(map(str, paths))}")
    return strings, np.concatenate(parts)


def read_teacher_texts(paths: Sequence[str | Path], languages: Sequence[str] = ()) -> TeacherTexts:
    """Every text row of the files (directories: their *.parquet), only `languages` if given."""
    strings, vectors = _read(paths, TEXT_COLUMNS, "teacher text embeddings", optional=("key",))
    rows = TeacherTexts(strings["text"], strings["language"], vectors, strings["key"])
    if not languages:
        return rows
    kept = rows.subset(np.isin(rows.languages, list(languages)))
    if not len(kept):
        raise InputError(
            f"no teacher text embeddings in the language(s) {', '.join(sorted(languages))} "
            f"in {', '.join(map(str, paths))}"
        )
    return kept


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def read_teacher_images(paths: Sequence[str | Path]) -> TeacherImages:
    """Every image row of the files, a key once; a key given twice (an image whose captions span two
    shards) must have the same vector both times, up to the rounding of another batch."""
    strings, vectors = _read(paths, IMAGE_COLUMNS, "teacher image embeddings")
    first: dict[str, int] = {}
    keep = []
    for i, key in enumerate(strings["key"]):
        if key not in first:
            first[key] = i
            keep.append(i)
        elif _cosine(vectors[first[key]], vectors[i]) < _SAME_VECTOR:
            raise InputError(f"teacher image embeddings: key {key!r} is given twice with different vectors")
    return TeacherImages([strings["key"][i] for i in keep], vectors[keep])


def _vector_column(vectors: np.ndarray) -> pa.Array:
    vectors = np.ascontiguousarray(vectors, np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def _write(path: str | Path, table: pa.Table) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))
    return path


def write_teacher_texts(
    path: str | Path,
    texts: Sequence[str],
    languages: Sequence[str],
    vectors: np.ndarray,
    keys: Sequence[str | None] | None = None,
) -> Path:
    keys = [None] * len(texts) if keys is None else list(keys)
    if not len(texts) == len(languages) == len(vectors) == len(keys):
        raise InputError(
            f"teacher texts: {len(texts)} texts, {len(languages)} languages, {len(keys)} keys and "
            f"{len(vectors)} vectors"
        )
    columns = [pa.array(list(texts), pa.string()), pa.array(list(languages), pa.string())]
    columns += [_vector_column(vectors), pa.array(keys, pa.string())]
    return _write(path, pa.table(columns, names=[*TEXT_COLUMNS, "key"]))


def write_teacher_images(path: str | Path, keys: Sequence[str], vectors: np.ndarray) -> Path:
    if len(keys) != len(vectors):
        raise InputError(f"teacher images: {len(keys)} keys and {len(vectors)} vectors")
    table = pa.table([pa.array(list(keys), pa.string()), _vector_column(vectors)], names=list(IMAGE_COLUMNS))
    return _write(path, table)
