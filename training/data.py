"""Training pairs from Parquet shards (columns key, image, text, language; one row per caption).

The index (keys, texts and languages of every row, and where each row lies) is read into memory;
image bytes are not. They are either cached by key (small data: each distinct image once, decoded
once by the trainer) or read from the shards one row group at a time by the worker that needs them
(big data).

Batches are a pure function of (seed, batch number): every epoch has its own seeded permutation
of the rows (with uncached images, a permutation of row groups, then of the rows inside windows of
`shuffle_window` row groups, so a worker reads each row group once per window). So a resumed run
rebuilds exactly the batches it would have seen, whatever the number of workers.

A batch holds `batch_size` captions (rows drawn at random, or `captions_per_image` captions of each
of batch_size / captions_per_image images), a `single_keywords` fraction of the word lists among
them cut to one of their words. The last `text_pairs` fraction of them is paired with
another caption of the same key (co-training: another language, or the same one), the others
with their image, which is encoded once per batch however many of its captions the batch holds.
Every item carries its key: items with the same key are positives of each other.

A batch names its texts by their number in the rendered-text cache (`shown_texts` lists every text
a batch can show), never by pixels: rendering stays out of the training step, and what crosses
from a worker to the trainer is a few small arrays. The texts come in the groups the network reads
in one call each (`group_texts`).
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset

from data.captions import WORD_SEPARATOR
from ground.errors import FileFormatError, InputError
from ground.processes import exit_with, lifeline
from model.images import BadImageError
from model.preprocess import prepare_image

COLUMNS = {"key": pa.string(), "image": pa.binary(), "text": pa.string(), "language": pa.string()}
_HOLDOUT_SALT = "pixglot-holdout:"


def shard_files(paths: Sequence[str | Path], what: str = "training shards") -> list[Path]:
    """The *.parquet files of directories (sorted) and files given directly, in order; `what` the
    files are, for the errors."""
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(path.glob("*.parquet"))
            if not found:
                raise InputError(f"{path}: no *.parquet {what} in this directory")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path}: no such file or directory ({what})")
    return files


def _check_schema(path: Path, schema: pa.Schema) -> None:
    for name, kind in COLUMNS.items():
        index = schema.get_field_index(name)
        if index < 0:
            raise FileFormatError(
                path, f"lacks the column {name!r} (training shards have {', '.join(COLUMNS)})"
            )
        actual = schema.field(index).type
        compatible = {
            pa.string(): (pa.string(), pa.large_string()),
            pa.binary(): (pa.binary(), pa.large_binary()),
        }[kind]
        if actual not in compatible:
            raise FileFormatError(path, f"column {name!r} is {actual}, expected {kind}")


def fingerprint_files(files: Sequence[Path]) -> str:
    """sha256 over the shards' names, sizes and bytes: equal data, equal fingerprint."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


@dataclass
class PairIndex:
    """Every usable row of the shards, without images."""

    files: list[Path]
    group_file: np.ndarray  # row group -> its file (index into files)
    group_number: np.ndarray  # row group -> its number inside the file
    row_group: np.ndarray  # row -> its row group
    row_offset: np.ndarray  # row -> its position inside the row group
    key_id: np.ndarray  # row -> index into keys
    keys: list[str]
    texts: list[str]
    language_id: np.ndarray  # row -> index into languages
    languages: list[str]
    fingerprint: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_images(self) -> int:
        return len(np.unique(self.key_id))

    def subset(self, rows: np.ndarray) -> PairIndex:
        """The given rows; key and language tables are kept, so ids stay valid."""
        return replace(
            self,
            row_group=self.row_group[rows],
            row_offset=self.row_offset[rows],
            key_id=self.key_id[rows],
            texts=[self.texts[i] for i in rows],
            language_id=self.language_id[rows],
        )

    def split_by_key(self, fraction: float) -> tuple[PairIndex, PairIndex]:
        """(kept, held out): the keys whose salted hash falls below `fraction` are held out."""
        held = np.array([holdout_rank(k) < fraction for k in self.keys], dtype=bool)[self.key_id]
        return self.subset(np.flatnonzero(~held)), self.subset(np.flatnonzero(held))


def holdout_rank(key: str) -> float:
    """A fixed pseudo-random number in [0, 1) per key: the order in which keys are held out."""
    digest = hashlib.sha256((_HOLDOUT_SALT + key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def read_index(
    paths: Sequence[str | Path], languages: Sequence[str] = (), fingerprint: bool = True
) -> PairIndex:
    """Read key, text and language of every row (not the images); only `languages` if given."""
    files = shard_files(paths)
    wanted = set(languages)
    key_ids: dict[str, int] = {}
    language_ids: dict[str, int] = {}
    group_file, group_number = [], []
    row_group, row_offset, key_id, texts, language_id = [], [], [], [], []
    for f, path in enumerate(files):
        try:
            shard = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as err:
            raise FileFormatError(path, f"not a readable Parquet file ({err})") from None
        _check_schema(path, shard.schema_arrow)
        for number in range(shard.num_row_groups):
            table = shard.read_row_group(number, columns=["key", "text", "language"])
            for name in ("key", "text", "language"):
                if table.column(name).null_count:
                    raise FileFormatError(
                        path,
                        f"row group {number}: column {name!r} has "
                        f"{table.column(name).null_count} empty (null) value(s)",
                    )
            group = len(group_file)
            group_file.append(f)
            group_number.append(number)
            columns = zip(
                table.column("key").to_pylist(),
                table.column("text").to_pylist(),
                table.column("language").to_pylist(),
                strict=True,
            )
            for offset, (key, text, language) in enumerate(columns):
                if wanted and language not in wanted:
                    continue
                row_group.append(group)
                row_offset.append(offset)
                key_id.append(key_ids.setdefault(key, len(key_ids)))
                texts.append(text)
                language_id.append(language_ids.setdefault(language, len(language_ids)))
    if not texts:
        which = f" in the languages {', '.join(sorted(wanted))}" if wanted else ""
        raise InputError(f"no training pairs{which} in {', '.join(map(str, paths))}")
    if wanted - set(language_ids):
        raise InputError(
            f"no pairs in the language(s) {', '.join(sorted(wanted - set(language_ids)))} "
            f"in {', '.join(map(str, paths))}"
        )
    return PairIndex(
        files=files,
        group_file=np.array(group_file, np.int64),
        group_number=np.array(group_number, np.int64),
        row_group=np.array(row_group, np.int64),
        row_offset=np.array(row_offset, np.int64),
        key_id=np.array(key_id, np.int64),
        keys=list(key_ids),
        texts=texts,
        language_id=np.array(language_id, np.int64),
        languages=list(language_ids),
        fingerprint=fingerprint_files(files) if fingerprint else "",
    )


class CachedImages:
    """The encoded image of every key, read once; for data whose distinct images fit in memory."""

    def __init__(self, index: PairIndex):
        self.index = index
        ids = {key: i for i, key in enumerate(index.keys)}
        needed = np.zeros(len(index.keys), bool)
        needed[index.key_id] = True
        self.images: list[bytes | None] = [None] * len(index.keys)
        missing = int(needed.sum())
        for path in index.files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=2048, columns=["key", "image"]):
                if not missing:
                    return
                images = batch.column(1)
                for i, key in enumerate(batch.column(0).to_pylist()):
                    k = ids.get(key)
                    if k is not None and needed[k] and self.images[k] is None:
                        self.images[k] = images[i].as_py()
                        missing -= 1

    def get(self, row: int) -> bytes | None:
        return self.images[self.index.key_id[row]]

    def name(self, key: int) -> str:
        return f"image of key {self.index.keys[key]!r}"

    def where(self, row: int) -> str:
        return self.name(self.index.key_id[row])


class StreamedImages:
    """Images read from the shards a row group at a time, the last few row groups kept."""

    def __init__(self, index: PairIndex, keep_groups: int):
        self.index = index
        self.keep_groups = keep_groups
        self._groups: OrderedDict[int, pa.Array] = OrderedDict()

    def __getstate__(self) -> dict:
        return {"index": self.index, "keep_groups": self.keep_groups, "_groups": OrderedDict()}

    def _group(self, group: int) -> pa.Array:
        if group in self._groups:
            self._groups.move_to_end(group)
            return self._groups[group]
        path = self.index.files[self.index.group_file[group]]
        column = pq.ParquetFile(path).read_row_group(int(self.index.group_number[group]), columns=["image"])
        self._groups[group] = column.column(0).combine_chunks()
        while len(self._groups) > self.keep_groups:
            self._groups.popitem(last=False)
        return self._groups[group]

    def get(self, row: int) -> bytes | None:
        return self._group(int(self.index.row_group[row]))[int(self.index.row_offset[row])].as_py()

    def where(self, row: int) -> str:
        group = int(self.index.row_group[row])
        path = self.index.files[self.index.group_file[group]]
        return f"{path}: row group {self.index.group_number[group]}, row {self.index.row_offset[row]}"


def image_source(
    index: PairIndex, cache: bool | str, cache_max_images: int, window: int
) -> CachedImages | StreamedImages:
    if cache == "auto":
        cache = index.n_images <= cache_max_images
    return CachedImages(index) if cache else StreamedImages(index, window)


@dataclass(frozen=True)
class BatchSpec:
    """Everything a worker needs to build batches, besides the data."""

    batch_size: int
    text_pairs: float
    seed: int
    image_size: int
    preprocessing: dict
    window: int | None  # row groups shuffled together; None: all rows at once (cached images)
    captions_per_image: int = 1  # > 1: batches of images, each with this many of its captions
    text_pair_partner: str = "other_language"  # or "same_language"
    single_keywords: float = 0.0  # fraction of word lists ("a, b, c") drawn as one of their words
    text_chunks: int = 0  # `group_texts`: 0, one group per height; n, n groups of equal size
    decode_images: bool = True  # False: the trainer holds every image, batches name them by key


def shown_texts(index: PairIndex, single_keywords: float) -> list[str]:
    """Every text a batch can show, once each: the captions and, with `single_keywords`, each word
    of the word lists."""
    texts = dict.fromkeys(index.texts)
    if single_keywords:
        for text in list(texts):
            words = text.split(WORD_SEPARATOR)
            if len(words) > 1:
                texts.update(dict.fromkeys(words))
    return list(texts)


def group_texts(rows: np.ndarray, chunks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texts of `rows[i]` patch rows each, in the groups the network reads with one call each.

    Returns the order of the texts (group after group), the groups as rows of (end, patch rows read,
    padded) and each text's slot in that order. With chunks = 0 a group is all texts of one height
    (ascending) and nothing is padded: no text reads more than it would at inference. With n > 0 the
    texts, sorted by height, are cut into n groups of equal size (the last may be smaller), each read
    at its tallest text's height with the shorter ones padded and masked (`ViT.forward`'s
    row_counts): a GPU then sees a few shapes, not new ones every step.
    """
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    if chunks:
        ends = np.cumsum([len(part) for part in np.array_split(ordered, min(chunks, len(ordered)))])
    else:
        ends = np.append(np.flatnonzero(np.diff(ordered)) + 1, len(ordered))
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    read = ordered[ends - 1]
    groups = np.stack([ends, read, ordered[starts] < read], axis=1).astype(np.int64)
    slots = np.empty(len(rows), np.int64)
    slots[order] = np.arange(len(rows))
    return order, groups, slots


def epoch_order(index: PairIndex, seed: int, epoch: int, window: int | None) -> np.ndarray:
    """The rows of one epoch in training order."""
    rng = np.random.default_rng([seed, 0, epoch])
    if window is None:
        return rng.permutation(len(index))
    groups = np.unique(index.row_group)
    by_group = np.argsort(index.row_group, kind="stable")
    starts = np.searchsorted(index.row_group[by_group], groups)
    ends = np.append(starts[1:], len(by_group))
    order = rng.permutation(len(groups))
    parts = []
    for w in range(0, len(order), window):
        rows = np.concatenate([by_group[starts[g] : ends[g]] for g in order[w : w + window]])
        parts.append(rng.permutation(rows))
    return np.concatenate(parts)


class PairBatches(Dataset):
    """Item g is the g-th batch of training (epochs follow one another), built from scratch.

    With captions_per_image = 1 an epoch is a permutation of the rows and a batch is the next
    `batch_size` rows. With k > 1 it is a permutation of the images and a batch is the next
    `batch_size // k` images with k of their captions each (other languages first): every image
    is encoded once for k captions, which costs far less than k image/caption pairs.
    """

    def __init__(
        self,
        index: PairIndex,
        images: CachedImages | StreamedImages | None,
        spec: BatchSpec,
        text_ids: dict[str, int],
        text_rows: np.ndarray,
    ):
        """images: where a worker reads the images, None when the trainer holds them all
        (spec.decode_images False); text_ids: the number of every text of `shown_texts` in the
        rendered texts; text_rows: the patch rows of each of those numbers."""
        self.index = index
        self.images = images
        self.spec = spec
        self.text_ids = text_ids
        self.text_rows = text_rows
        self._rows_by_key = np.argsort(index.key_id, kind="stable")
        self._key_start = np.searchsorted(index.key_id[self._rows_by_key], np.arange(len(index.keys) + 1))
        self._present = np.flatnonzero(np.diff(self._key_start))  # keys with at least one row
        self._order: tuple[int, np.ndarray] | None = None
        if spec.captions_per_image > 1:
            if spec.window is not None:
                raise InputError("data.captions_per_image > 1 needs the images in memory (data.cache_images)")
            if spec.batch_size // spec.captions_per_image < 2:
                raise InputError(
                    f"data.batch_size={spec.batch_size} holds fewer than 2 images of "
                    f"{spec.captions_per_image} captions (data.captions_per_image)"
                )
        if self.batches_per_epoch < 1:
            raise InputError(
                f"data.batch_size={spec.batch_size} exceeds one epoch of the training data "
                f"({len(index)} pairs, {len(self._present)} images)"
            )

    @property
    def images_per_batch(self) -> int:
        return self.spec.batch_size // self.spec.captions_per_image

    @property
    def batches_per_epoch(self) -> int:
        if self.spec.captions_per_image == 1:
            return len(self.index) // self.spec.batch_size
        return len(self._present) // self.images_per_batch

    def _rows_of(self, key: int) -> np.ndarray:
        return self._rows_by_key[self._key_start[key] : self._key_start[key + 1]]

    def _epoch(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            if self.spec.captions_per_image == 1:
                order = epoch_order(self.index, self.spec.seed, epoch, self.spec.window)
            else:
                order = np.random.default_rng([self.spec.seed, 0, epoch]).permutation(self._present)
            self._order = (epoch, order)
        return self._order[1]

    def rows(self, batch: int) -> np.ndarray:
        epoch, position = divmod(batch, self.batches_per_epoch)
        order = self._epoch(epoch)
        k = self.spec.captions_per_image
        if k == 1:
            size = self.spec.batch_size
            return order[position * size : (position + 1) * size]
        rng = np.random.default_rng([self.spec.seed, 2, batch])
        size = self.images_per_batch
        return np.concatenate(
            [self._captions(key, k, rng) for key in order[position * size : (position + 1) * size]]
        )

    def _captions(self, key: int, k: int, rng: np.random.Generator) -> np.ndarray:
        """k rows of the key: a random order of its rows, one per language before any repeat."""
        rows = rng.permutation(self._rows_of(key))
        _, first = np.unique(self.index.language_id[rows], return_index=True)
        spread = np.concatenate([rows[np.sort(first)], np.delete(rows, first)])
        return np.resize(spread, k)  # fewer than k captions: repeated

    def partner(self, row: int, rng: np.random.Generator) -> int:
        """Another caption of the row's key: in another language (or, with text_pair_partner =
        "same_language", in the same one) where there is one, else any other text."""
        same = self._rows_of(self.index.key_id[row])
        same = same[same != row]
        other_text = np.array([self.index.texts[r] != self.index.texts[row] for r in same], bool)
        in_language = self.index.language_id[same] == self.index.language_id[row]
        if self.spec.text_pair_partner == "same_language":
            preferred = same[in_language & other_text]
        else:
            preferred = same[~in_language]
        for candidates in (preferred, same[other_text]):
            if len(candidates):
                return int(rng.choice(candidates))
        return row

    def texts(self, rows: list[int], batch: int) -> list[str]:
        """The rows' captions as batch `batch` shows them: with `single_keywords`, that fraction of the
        word lists (captions of several parts joined by ", ", as CLDR keywords are) shows one part,
        drawn at random, as a one-word search would read."""
        texts = [self.index.texts[r] for r in rows]
        if not self.spec.single_keywords:
            return texts
        rng = np.random.default_rng([self.spec.seed, 3, batch])
        draws = rng.random(len(texts))
        picks = rng.integers(0, 1 << 30, len(texts))
        for i, text in enumerate(texts):
            words = text.split(WORD_SEPARATOR)
            if len(words) > 1 and draws[i] < self.spec.single_keywords:
                texts[i] = words[picks[i] % len(words)]
        return texts

    def __getitem__(self, batch: int) -> dict:
        """The keys of the images (each once) of the image/text part; the texts (the left texts of
        the text/text pairs, then every row's caption) as cache numbers in `group_texts` order, with
        their groups and slots; the key of each text. With `decode_images`, the images too."""
        rows = self.rows(batch)
        paired = len(rows) - round(len(rows) * self.spec.text_pairs)
        _, first = np.unique(self.index.key_id[rows[:paired]], return_index=True)
        image_rows = rows[np.sort(first)]
        out = {"error": ""}
        if self.spec.decode_images:
            pictures = []
            for row in image_rows.tolist():
                try:
                    pictures.append(
                        prepare_image(self.image(row), self.spec.image_size, self.spec.preprocessing)
                    )
                except BadImageError as err:
                    # Returned as a value: worker processes cannot re-raise our exception types intact.
                    return {"error": f"{self.images.where(row)}: {err.reason}"}
            out["images"] = np.stack(pictures)
        rng = np.random.default_rng([self.spec.seed, 1, batch])
        partners = np.array([self.partner(row, rng) for row in rows[paired:].tolist()], np.int64)
        ids = np.array([self.text_ids[t] for t in self.texts([*partners.tolist(), *rows.tolist()], batch)])
        order, groups, slots = group_texts(self.text_rows[ids], self.spec.text_chunks)
        return {
            **out,
            "image_keys": self.index.key_id[image_rows],
            "text_ids": ids[order],
            "text_groups": groups,
            "text_slots": slots,
            "left_text_keys": self.index.key_id[partners],
            "right_keys": self.index.key_id[rows],
        }

    def image(self, row: int) -> bytes:
        data = self.images.get(row)
        if data is None:
            raise BadImageError(self.images.where(row), "the image is empty (null)")
        return data


def loader(batches: PairBatches, start: int, stop: int, workers: int, pin_memory: bool = False) -> DataLoader:
    """Batches start..stop-1, built ahead by `workers` processes (started from a fork server: a
    process that has used PyTorch's thread pool cannot safely fork)."""
    return DataLoader(
        batches,
        batch_size=None,
        sampler=range(start, stop),
        num_workers=workers,
        multiprocessing_context="forkserver" if workers else None,
        prefetch_factor=4 if workers else None,
        pin_memory=pin_memory,
        worker_init_fn=functools.partial(_init_worker, lifeline()) if workers else None,
    )


def _init_worker(trainer: Connection, _: int) -> None:
    torch.set_num_threads(1)
    # A worker's parent is the fork server, so PyTorch's own check cannot see the training process
    # die (kill -9); without this, its workers would wait for work forever.
    exit_with(trainer)


@dataclass
class HeldOut:
    """Held-out images and, per language, their captions and the image index of each."""

    images: list[bytes]
    keys: list[str]
    captions: dict[str, tuple[list[str], list[int]]]

    @property
    def n_texts(self) -> int:
        return sum(len(texts) for texts, _ in self.captions.values())


def held_out(index: PairIndex, source: CachedImages | StreamedImages, max_images: int) -> HeldOut:
    """At most `max_images` images (the first keys by holdout rank) and all their captions."""
    present = np.unique(index.key_id)
    chosen = sorted(present.tolist(), key=lambda k: holdout_rank(index.keys[k]))[:max_images]
    position = {k: i for i, k in enumerate(chosen)}
    images: list[bytes | None] = [None] * len(chosen)
    captions: dict[str, tuple[list[str], list[int]]] = {}
    for row in range(len(index)):
        k = int(index.key_id[row])
        if k not in position:
            continue
        i = position[k]
        if images[i] is None:
            images[i] = source.get(row)
            if images[i] is None:
                raise FileFormatError(source.where(row), "the held-out image is empty (null)")
        texts, owners = captions.setdefault(index.languages[index.language_id[row]], ([], []))
        texts.append(index.texts[row])
        owners.append(i)
    return HeldOut(
        images=images, keys=[index.keys[k] for k in chosen], captions=dict(sorted(captions.items()))
    )
