"""CC3M-35L: the Conceptual Captions (CC3M) captions in 35 languages, with images from the web.

`download` (data.translated_captions) fetches cc3m_mt_train.jsonl.bz2 and cc3m_mt_dev.jsonl.bz2.
CC3M itself publishes no images, only one TSV per split, `caption<TAB>image URL` a line and no
header: Train_GCC-training.tsv (3,318,333 lines) and Validation_GCC-1.1.0-Validation.tsv (15,840
lines), from https://ai.google.com/research/ConceptualCaptions/download, behind a sign-in, so the
user brings it. Record `rec_num` n of the translations is line n of that TSV.

`prepare` parses the split's translations into caption shards, fetches the images they name
(data.web_images: politely, resumably, failures counted) into `datasets/cc3m35l/images/<split>/`,
and writes training shards (data.pair_shards). Captions whose image could not be had are counted
and left out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from data import pair_shards, web_images
from data import translated_captions as tc
from ground.errors import FileFormatError, InputError

NAME = "cc3m35l"
TSV_NAMES = {"train": "Train_GCC-training.tsv", "dev": "Validation_GCC-1.1.0-Validation.tsv"}
IMAGES_DIR = "images"


def image_folder(directory: str | Path | None, split: str) -> web_images.ImageFolder:
    root = Path(directory) if directory else tc.default_directory(NAME)
    return web_images.ImageFolder(root / IMAGES_DIR / split)


def wanted_records(shards: Sequence[Path]) -> np.ndarray:
    """wanted[n]: whether the caption shards name record n."""
    wanted = np.zeros(1, dtype=bool)
    for path in shards:
        keys = pq.read_table(path, columns=["key"]).column("key").unique().to_pylist()
        numbers = np.fromiter((tc.cc3m_record(key) for key in keys), dtype=np.int64, count=len(keys))
        if len(numbers) and numbers.max() >= len(wanted):
            grown = np.zeros(numbers.max() + 1, dtype=bool)
            grown[: len(wanted)] = wanted
            wanted = grown
        wanted[numbers] = True
    return wanted


def read_urls(tsv: Path, wanted: np.ndarray) -> Iterator[tuple[int, str]]:
    """(record, URL) of each wanted record, in file order; every line is checked."""
    with open(tsv, "rb") as f:
        for number, line in enumerate(f, start=1):
            url = _url(tsv, number, line)
            if number < len(wanted) and wanted[number]:
                yield number, url


def _url(tsv: Path, number: int, line: bytes) -> str:
    fields = line.rstrip(b"\r\n").split(b"\t")
    if len(fields) != 2:
        raise FileFormatError(tsv, f"line {number}: expected caption<TAB>URL, found {len(fields)} field(s)")
    try:
        url = fields[1].decode("utf-8").strip()
    except UnicodeDecodeError:
        raise FileFormatError(tsv, f"line {number}: the URL is not UTF-8") from None
    if not url.startswith(("http://", "https://")):
        raise FileFormatError(tsv, f"line {number}: {url[:80]!r} is not an http(s) URL")
    return url


def _check_tsv_exists(tsv: Path, split: str) -> None:
    if not tsv.is_file():
        raise InputError(
            f"{tsv}: no such file; CC3M's {split} split is {TSV_NAMES[split]} from "
            "https://ai.google.com/research/ConceptualCaptions/download"
        )


def _check_tsv_lines(tsv: Path, wanted: np.ndarray, split: str) -> int:
    """Every line checked before the first request, so a bad one cannot stop a fetch half-way."""
    lines = 0
    with open(tsv, "rb") as f:
        for lines, line in enumerate(f, start=1):
            _url(tsv, lines, line)
    if len(wanted) - 1 > lines:
        raise InputError(
            f"{tsv}: {lines} line(s), but the {split} translations name record {len(wanted) - 1}; "
            f"is it CC3M's {split} split ({TSV_NAMES[split]})?"
        )
    return lines


@dataclass
class PrepareSummary:
    parse: tc.ParseSummary
    fetch: web_images.FetchSummary | None  # None when fetching was left out
    build: pair_shards.BuildSummary


def prepare(
    directory: str | Path | None = None,
    *,
    out: str | Path,
    tsv: str | Path | None = None,
    split: str = "train",
    languages: Sequence[str] | None = None,
    fetch: bool = True,
    workers: int = web_images.WORKERS,
    timeout: float = web_images.TIMEOUT_S,
    rows_per_shard: int = 10_000,
    lines_per_shard: int = tc.LINES_PER_SHARD,
    progress: bool = True,
) -> PrepareSummary:
    """Caption shards, images, then training shards `<out>/cc3m35l-<split>-BBB-NNNN.parquet`.

    `tsv`: CC3M's TSV of the split, needed to fetch images (`fetch=False` uses those already there).
    """
    languages = tc.check_languages(languages)
    if fetch and tsv is None:
        raise InputError(f"fetching CC3M images needs CC3M's {split} TSV ({TSV_NAMES[split]})")
    if fetch and tsv is not None:
        _check_tsv_exists(Path(tsv), split)
        web_images.check_options(workers, timeout)
    parsed = tc.parse(NAME, directory, split, lines_per_shard=lines_per_shard, progress=progress)
    wanted = wanted_records(parsed.shards)
    folder = image_folder(directory, split)
    codes = folder.scan(len(wanted))
    fetched = None
    if fetch and tsv is not None:
        tsv = Path(tsv)
        _check_tsv_lines(tsv, wanted, split)
        fetched = web_images.fetch(
            read_urls(tsv, wanted),
            folder,
            total=int(wanted.sum()),
            present=codes,
            workers=workers,
            timeout=timeout,
            progress=progress,
        )
        codes = folder.scan(len(wanted))

    def lookup(key: str) -> Path | None:
        number = tc.cc3m_record(key)
        code = int(codes[number]) if number < len(codes) else 0
        return folder.path(number, code) if code else None

    built = pair_shards.build(
        parsed.shards,
        out,
        lookup,
        prefix=f"{NAME}-{split}",
        languages=languages,
        images_state=f"{int((codes[: len(wanted)][wanted] > 0).sum())} images in {folder.root.resolve()}",
        rows_per_shard=rows_per_shard,
        progress=progress,
    )
    return PrepareSummary(parsed, fetched, built)
