"""COCO-35L and CC3M-35L: the Crossmodal-3600 authors' machine translations of the COCO and CC3M
captions into the 34 languages of XM3600 but Quechua (English, the source, makes 35).

The files, from the Crossmodal-3600 project page (web-data/README.md there gives the format):

    https://storage.googleapis.com/crossmodal-3600/coco_mt_train.jsonl.bz2   (567 MB)
    https://storage.googleapis.com/crossmodal-3600/coco_mt_dev.jsonl.bz2     (25 MB)
    https://storage.googleapis.com/crossmodal-3600/cc3m_mt_train.jsonl.bz2   (7 GB)
    https://storage.googleapis.com/crossmodal-3600/cc3m_mt_dev.jsonl.bz2     (33 MB)

One JSON object a line, one translation of one English caption:

    image_id                   COCO: "<COCO image id>_<N>", the image's Nth caption (Karpathy split)
    rec_num                    CC3M: the record's number (from 1) in the published CC3M split's TSV
    src_lang                   "en"
    trg_lang                   one of TARGET_LANGUAGES
    caption_tokenized          the English caption (tokenized, lowercased; CC3M's digits became '#')
    translation_tokenized      its translation
    backtranslation_tokenized  the translation back into English (not used here)

`download` fetches them with Pixglot's downloader (resumable) into `datasets/<name>/`; `parse` turns
one into caption shards, `<dir>/captions/<split>-NNNNN.parquet` with the columns key, text,
language, source, each shard made from a fixed range of the file's lines, so a rerun skips the
shards already written. English rows come from the lines translated into PIVOT_LANGUAGE: every
English caption is translated into every language, so each caption is taken exactly once.

A line that breaks the format stops the parse with its file, line number and reason; the shards
written before it stay. An empty translation is not an error: it is left out and counted.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ground.atomic import write_atomic, write_bytes_atomic
from ground.download import download as fetch
from ground.download import part_path
from ground.errors import FileFormatError, InputError
from ground.home import datasets_dir

BASE_URL = "https://storage.googleapis.com/crossmodal-3600"
BASE_URL_VARIABLE = "PIXGLOT_TRANSLATED_CAPTIONS_URL"
SPLITS = ("train", "dev")
SOURCE_LANGUAGE = "en"
TARGET_LANGUAGES = (
    "ar", "bn", "cs", "da", "de", "el", "es", "fa", "fi", "fil", "fr", "he",
    "hi", "hr", "hu", "id", "it", "ja", "ko", "mi", "nl", "no", "pl", "pt",
    "ro", "ru", "sv", "sw", "te", "th", "tr", "uk", "vi", "zh",
)  # fmt: skip
LANGUAGES = tuple(sorted((*TARGET_LANGUAGES, SOURCE_LANGUAGE)))
PIVOT_LANGUAGE = "de"
CAPTIONS_DIR = "captions"
LINES_PER_SHARD = 1_000_000
SCHEMA = pa.schema(
    [("key", pa.string()), ("text", pa.string()), ("language", pa.string()), ("source", pa.string())]
)
_TEXT_FIELDS = ("src_lang", "trg_lang", "caption_tokenized", "translation_tokenized")
_COCO_ID = re.compile(r"(\d{1,12})_(\d{1,3})")
_MAGIC = {".bz2": (b"BZh", "bzip2"), ".gz": (b"\x1f\x8b", "gzip")}
_LINES_KEY = b"pixglot:lines"
_EMPTY_KEY = b"pixglot:empty"


class LineError(ValueError):
    """Why one line breaks the format; the parser adds the file and the line number."""


@dataclass(frozen=True)
class Format:
    """One of the two datasets: its name in Pixglot, its files' stem and its image id field."""

    name: str
    title: str
    stem: str
    id_field: str

    def file_name(self, split: str) -> str:
        return f"{self.stem}_{split}.jsonl.bz2"

    def key(self, value: object, split: str) -> str:
        """The image key of an id field's value (COCO: the image id; CC3M: cc3m-<split>-<rec_num>)."""
        if self.id_field == "image_id":
            match = _COCO_ID.fullmatch(value) if isinstance(value, str) else None
            if not match:
                raise LineError(f"image_id {value!r} is not '<COCO image id>_<caption number>'")
            return str(int(match.group(1)))
        return cc3m_key(split, _record_number(value))


def _record_number(value: object) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LineError(f"rec_num {value!r} is not a record number (1, 2, ...)")
    return value


def cc3m_key(split: str, record: int) -> str:
    return f"cc3m-{split}-{record}"


def cc3m_record(key: str) -> int:
    """The record number in a CC3M key (cc3m-<split>-<rec_num>)."""
    return int(key.rsplit("-", 1)[1])


COCO = Format("coco35l", "COCO-35L", "coco_mt", "image_id")
CC3M = Format("cc3m35l", "CC3M-35L", "cc3m_mt", "rec_num")
FORMATS = {f.name: f for f in (COCO, CC3M)}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise InputError(f"unknown dataset {name!r}; expected one of {', '.join(FORMATS)}")
    return FORMATS[name]


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def check_languages(languages: Sequence[str] | None) -> list[str] | None:
    """The codes as given, each checked against LANGUAGES; None keeps every language."""
    if not languages:
        return None
    unknown = [code for code in languages if code not in LANGUAGES]
    if unknown:
        raise InputError(
            f"unknown language code(s) {', '.join(map(repr, unknown))}; COCO-35L and CC3M-35L have "
            f"{', '.join(LANGUAGES)}"
        )
    return list(dict.fromkeys(languages))


def default_directory(name: str) -> Path:
    return datasets_dir() / get_format(name).name


# --- download -----------------------------------------------------------------------------------


@dataclass
class DownloadResult:
    directory: Path
    files: list[Path]
    fetched: list[str]  # file names this call downloaded; empty if all were there


def download(
    name: str,
    directory: str | Path | None = None,
    *,
    splits: Sequence[str] = SPLITS,
    base_url: str | None = None,
    progress: bool = True,
) -> DownloadResult:
    """Fetch the caption files of `splits` into `directory`; complete files are kept, cut ones resume.

    `base_url` (also PIXGLOT_TRANSLATED_CAPTIONS_URL) stands in for the public bucket: a mirror or
    a local server holding the same file names.
    """
    fmt = get_format(name)
    directory = Path(directory) if directory else default_directory(name)
    directory.mkdir(parents=True, exist_ok=True)
    base = (base_url or os.environ.get(BASE_URL_VARIABLE) or BASE_URL).rstrip("/")
    files, fetched = [], []
    for split in dict.fromkeys(splits):
        check_split(split)
        dest = directory / fmt.file_name(split)
        if not dest.exists():
            fetch(f"{base}/{dest.name}", dest, progress=progress)
            fetched.append(dest.name)
        files.append(dest)
    return DownloadResult(directory, files, fetched)


def source_file(fmt: Format, directory: Path, split: str) -> Path:
    """The split's caption file: the published .jsonl.bz2, or an earlier .jsonl.gz, or plain .jsonl."""
    stem = f"{fmt.stem}_{split}.jsonl"
    for suffix in (".bz2", ".gz", ""):
        path = directory / (stem + suffix)
        if path.is_file():
            return path
    wanted = directory / fmt.file_name(split)
    state = " (its download is incomplete)" if part_path(wanted).exists() else ""
    raise InputError(
        f"{wanted}: missing{state}; run `pixglot data {fmt.name} download --split {split}` first"
    )


def _open(path: Path, raw: BinaryIO) -> BinaryIO:
    expected = _MAGIC.get(path.suffix)
    if expected is None:
        return raw
    magic, kind = expected
    head = raw.read(len(magic))
    raw.seek(0)
    if head != magic:
        raise FileFormatError(path, f"is not a {kind} file (it starts with {head!r}); download it again")
    return bz2.BZ2File(raw) if kind == "bzip2" else gzip.GzipFile(fileobj=raw)


# --- lines --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caption:
    key: str
    text: str
    language: str
    source: str | None


def parse_line(fmt: Format, split: str, raw: bytes) -> list[Caption]:
    """The captions of one line: its translation, and the English caption on PIVOT_LANGUAGE lines.

    Texts are as the file has them, empty ones too (the caller counts and leaves those out).
    Raises LineError.
    """
    record = _decode(raw)
    missing = [name for name in (fmt.id_field, *_TEXT_FIELDS) if name not in record]
    if missing:
        hint = ""
        if fmt.id_field == "rec_num" and "image_id" in record:
            hint = " (CC3M lines of the current release have rec_num; download the file again)"
        raise LineError(
            f"lacks the field(s) {', '.join(missing)}; each line has {fmt.id_field}, "
            f"{', '.join(_TEXT_FIELDS)}{hint}"
        )
    for name in _TEXT_FIELDS:
        _check_text(name, record[name])
    if record["src_lang"] != SOURCE_LANGUAGE:
        raise LineError(f"source language {record['src_lang']!r}, expected {SOURCE_LANGUAGE!r}")
    language = record["trg_lang"]
    if language not in TARGET_LANGUAGES:
        raise LineError(
            f"unknown target language {language!r}; {fmt.title} has {', '.join(TARGET_LANGUAGES)}"
        )
    key = fmt.key(record[fmt.id_field], split)
    english = record["caption_tokenized"]
    found = [Caption(key, record["translation_tokenized"], language, english)]
    if language == PIVOT_LANGUAGE:
        found.append(Caption(key, english, SOURCE_LANGUAGE, None))
    return found


def _decode(raw: bytes) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise LineError(f"not UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1})") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise LineError(f"not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise LineError(f"not a JSON object but {type(record).__name__}")
    return record


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise LineError(f"field {name!r} is {type(value).__name__}, expected a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        # JSON may escape a lone surrogate ("\ud800"), which no UTF-8 text (nor Parquet) can hold.
        raise LineError(f"field {name!r} holds the lone surrogate {value[err.start]!r}") from None


# --- caption shards -----------------------------------------------------------------------------


@dataclass
class ParseSummary:
    source: Path
    shards: list[Path]
    lines: int
    rows: int
    empty: int  # captions left out because their text was empty
    reused: int  # shards already there from an earlier run
    per_language: dict[str, int] = field(default_factory=dict)


def shard_path(directory: Path, split: str, number: int) -> Path:
    return directory / CAPTIONS_DIR / f"{split}-{number:05d}.parquet"


def caption_shards(name: str, directory: str | Path | None, split: str) -> list[Path]:
    """The caption shards of a finished parse, in order."""
    directory = Path(directory) if directory else default_directory(name)
    return sorted((directory / CAPTIONS_DIR).glob(f"{split}-*.parquet"))


def parse(
    name: str,
    directory: str | Path | None = None,
    split: str = "train",
    *,
    lines_per_shard: int = LINES_PER_SHARD,
    progress: bool = True,
) -> ParseSummary:
    """Turn the split's caption file into caption shards; shards already written are kept.

    Shards made from another copy of the file, or cut at other line counts, are made again.
    """
    fmt = get_format(name)
    check_split(split)
    if lines_per_shard < 1:
        raise InputError(f"lines_per_shard must be at least 1, got {lines_per_shard}")
    directory = Path(directory) if directory else default_directory(name)
    source = source_file(fmt, directory, split)
    out = directory / CAPTIONS_DIR
    out.mkdir(parents=True, exist_ok=True)
    stat = source.stat()
    layout = {
        "source": source.name,
        "bytes": stat.st_size,
        "mtime": int(stat.st_mtime),
        "lines_per_shard": lines_per_shard,
    }
    manifest = out / f"{split}.json"
    state = _read_json(manifest)
    if state.get("layout") != layout:
        for stale in out.glob(f"{split}-*.parquet"):
            stale.unlink()
        state = {}
    shards = caption_shards(name, directory, split)
    reused = len(shards)
    if state.get("shards") != len(shards):  # not finished, or a shard was deleted since
        write_bytes_atomic(manifest, json.dumps({"layout": layout}).encode())
        reused = _write_shards(fmt, split, source, lines_per_shard, progress)
        shards = caption_shards(name, directory, split)
        write_bytes_atomic(manifest, json.dumps({"layout": layout, "shards": len(shards)}).encode())
    return _summary(source, shards, reused)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or cut short: the parse starts over, which only costs time
    return value if isinstance(value, dict) else {}


class _Shard:
    """The captions of one range of lines, written as one Parquet file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: dict[str, list] = {name: [] for name in SCHEMA.names}
        self.lines = 0
        self.empty = 0

    def add(self, captions: list[Caption]) -> None:
        self.lines += 1
        for caption in captions:
            if not caption.text.strip():
                self.empty += 1
                continue
            self.columns["key"].append(caption.key)
            self.columns["text"].append(caption.text)
            self.columns["language"].append(caption.language)
            self.columns["source"].append(caption.source)

    def write(self) -> None:
        table = pa.Table.from_pydict(self.columns, schema=SCHEMA)
        table = table.replace_schema_metadata(
            {_LINES_KEY: str(self.lines).encode(), _EMPTY_KEY: str(self.empty).encode()}
        )
        write_atomic(self.path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def _write_shards(fmt: Format, split: str, source: Path, lines_per_shard: int, progress: bool) -> int:
    """Parse the lines of the shards not yet written; returns how many were already there."""
    directory = source.parent
    reused = 0
    shard: _Shard | None = None
    number = -1
    lineno = 0
    with (
        open(source, "rb") as raw,
        _open(source, raw) as stream,
        tqdm(
            total=source.stat().st_size, unit="B", unit_scale=True, desc=source.name, disable=not progress
        ) as bar,
    ):
        for lineno, line in _lines(source, stream):
            if (lineno - 1) // lines_per_shard != number:
                if shard is not None:
                    shard.write()
                number += 1
                path = shard_path(directory, split, number)
                shard = None if path.exists() else _Shard(path)
                reused += shard is None
            if shard is not None:
                shard.add(_captions(fmt, split, source, lineno, line))
            if lineno % 10_000 == 0:
                bar.update(raw.tell() - bar.n)
        if shard is not None:
            shard.write()
        bar.update(raw.tell() - bar.n)
    if lineno == 0:
        raise FileFormatError(source, "holds no lines")
    return reused


def _lines(source: Path, stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(number, line) of each line; a stream that breaks off is an error naming where."""
    lineno = 0
    while True:
        try:
            line = stream.readline()
        except (EOFError, OSError, zlib.error) as err:
            raise FileFormatError(
                source,
                f"line {lineno + 1}: the file breaks off or is damaged there ({err}); "
                "delete it and download it again",
            ) from None
        if not line:
            return
        lineno += 1
        yield lineno, line


def _captions(fmt: Format, split: str, source: Path, lineno: int, line: bytes) -> list[Caption]:
    if not line.strip():
        return []
    try:
        return parse_line(fmt, split, line.rstrip(b"\r\n"))
    except LineError as err:
        raise FileFormatError(source, f"line {lineno}: {err}") from None


def _summary(source: Path, shards: list[Path], reused: int) -> ParseSummary:
    lines = rows = empty = 0
    per_language: dict[str, int] = {}
    for path in shards:
        meta = pq.read_schema(path).metadata or {}
        lines += int(meta.get(_LINES_KEY, 0))
        empty += int(meta.get(_EMPTY_KEY, 0))
        column = pq.read_table(path, columns=["language"]).column("language")
        counts = column.value_counts().to_pylist() if len(column) else []
        rows += len(column)
        for item in counts:
            per_language[item["values"]] = per_language.get(item["values"], 0) + item["counts"]
    return ParseSummary(source, shards, lines, rows, empty, reused, dict(sorted(per_language.items())))
