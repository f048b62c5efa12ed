"""Images fetched from their web addresses, politely, into a folder of numbered files.

Polite: a few requests at a time (WORKERS by default, MAX_WORKERS at most), a timeout on each, a
User-Agent that names Pixglot, no retries within a run, answers that opt out of AI use
(`X-Robots-Tag: noai` or `noimageai`) respected, and an answer larger than `max_bytes` dropped.

Resumable: image n is kept as `<root>/<n // 10000>/<n>.<jpg|png|...>`, written atomically, and a
rerun fetches only the numbers that have no file. What failed for good (an HTTP 4xx answer, a
file that is not an image, an opt-out) is written to `<root>/failed.tsv` and not asked for again;
what may pass another time (a timeout, a refused connection, a 5xx or 429 answer) is.

A failure never stops a run: each is counted in the summary by its reason.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
from PIL import Image
from tqdm import tqdm

from ground.atomic import write_bytes_atomic
from ground.errors import InputError
from ground.pictures import DECODE_ERRORS

WORKERS = 4
MAX_WORKERS = 8
TIMEOUT_S = 10.0
MAX_BYTES = 20 << 20
FAILED_FILE = "failed.tsv"
# Stored formats and their file suffixes; the code of each is its position + 1 (0: no file).
SUFFIXES = (".jpg", ".png", ".gif", ".webp", ".bmp")
_FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}
_OPT_OUT = ("noai", "noimageai")
_PER_FOLDER = 10_000


def client_name() -> str:
    try:
        version = importlib.metadata.version("pixglot")
    except importlib.metadata.PackageNotFoundError:
        version = "dev"
    return f"Pixglot/{version} (image-text dataset preparation; fetches each image once)"


class ImageFolder:
    """Images numbered 1, 2, ...: which exist, where each lives, which failed for good."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, number: int, code: int) -> Path:
        return self.root / f"{number // _PER_FOLDER:04d}" / f"{number}{SUFFIXES[code - 1]}"

    def scan(self, size: int) -> np.ndarray:
        """codes[n]: the stored format of image n (0 if none), for n < size."""
        codes = np.zeros(size, dtype=np.uint8)
        if not self.root.is_dir():
            return codes
        for folder in self.root.iterdir():
            if not (folder.is_dir() and folder.name.isdigit()):
                continue
            for entry in os.scandir(folder):
                stem, dot, suffix = entry.name.partition(".")
                if stem.isdigit() and f"{dot}{suffix}" in SUFFIXES and int(stem) < size:
                    codes[int(stem)] = SUFFIXES.index(f"{dot}{suffix}") + 1
        return codes

    def has(self, number: int) -> bool:
        return any(self.path(number, code).exists() for code in range(1, len(SUFFIXES) + 1))

    def save(self, number: int, data: bytes, suffix: str) -> None:
        path = self.path(number, SUFFIXES.index(suffix) + 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)

    def failed(self) -> set[int]:
        """The numbers that failed for good in earlier runs."""
        path = self.root / FAILED_FILE
        if not path.is_file():
            return set()
        numbers = set()
        with open(path, encoding="utf-8", errors="replace") as log:
            for line in log:
                number = line.split("\t", 1)[0]
                if number.isdigit() and line.endswith("\n"):  # a last line cut short is ignored
                    numbers.add(int(number))
        return numbers

    def record_failure(self, number: int, reason: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / FAILED_FILE, "a", encoding="utf-8") as log:
            log.write(f"{number}\t{reason}\n")


@dataclass
class FetchSummary:
    fetched: int = 0
    present: int = 0  # already there from an earlier run
    failed_before: int = 0  # failed for good in an earlier run, not asked for again
    failed: Counter = field(default_factory=Counter)  # reason -> count, this run

    @property
    def failures(self) -> int:
        return sum(self.failed.values())


@dataclass(frozen=True)
class _Failure:
    reason: str  # e.g. "http_404", "timeout", "not_an_image"
    final: bool  # worth no second try


def check_options(workers: int, timeout: float) -> None:
    if not 1 <= workers <= MAX_WORKERS:
        raise InputError(f"workers must be between 1 and {MAX_WORKERS} (a polite few), got {workers}")
    if not timeout > 0:
        raise InputError(f"timeout must be positive, got {timeout}")


def fetch(
    jobs: Iterable[tuple[int, str]],
    folder: ImageFolder,
    *,
    total: int | None = None,
    present: np.ndarray | None = None,
    workers: int = WORKERS,
    timeout: float = TIMEOUT_S,
    max_bytes: int = MAX_BYTES,
    progress: bool = True,
) -> FetchSummary:
    """Fetch each (number, url) of `jobs` that has no file yet and did not fail for good before.

    `present`: `folder.scan(...)` made beforehand, which spares a look at the disk per job.
    """
    check_options(workers, timeout)
    summary = FetchSummary()
    failed_before = folder.failed()
    sessions = threading.local()

    def todo() -> Iterator[tuple[int, str]]:
        for number, url in jobs:
            bar.update(1)
            if number in failed_before:
                summary.failed_before += 1
            elif _there(folder, present, number):
                summary.present += 1
            else:
                yield number, url

    def one(url: str) -> tuple[bytes, str] | _Failure:
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
            sessions.session.headers.update({"User-Agent": client_name(), "Accept": "image/*"})
        try:
            return _get(sessions.session, url, timeout, max_bytes)
        except Exception as err:  # one odd answer must not stop a run of millions: counted, tried again
            return _Failure(f"error_{type(err).__name__}", False)

    with (
        tqdm(total=total, unit="img", desc="fetching images", disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pixglot-fetch") as pool,
    ):
        pending: dict[Future, int] = {}
        try:
            for number, url in todo():
                pending[pool.submit(one, url)] = number
                if len(pending) >= workers * 4:  # a bounded queue: millions of jobs, few futures
                    _collect(pending, folder, summary)
        finally:  # what is under way is kept, whatever stopped the loop
            while pending:
                _collect(pending, folder, summary)
    return summary


def _there(folder: ImageFolder, present: np.ndarray | None, number: int) -> bool:
    if present is not None and number < len(present):
        return bool(present[number])
    return folder.has(number)


def _collect(pending: dict[Future, int], folder: ImageFolder, summary: FetchSummary) -> None:
    """Store or count what the first finished requests brought; files are written here, by one thread."""
    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
    for future in finished:
        number = pending.pop(future)
        result = future.result()
        if isinstance(result, _Failure):
            summary.failed[result.reason] += 1
            if result.final:
                folder.record_failure(number, result.reason)
        else:
            folder.save(number, *result)
            summary.fetched += 1


def _get(session: requests.Session, url: str, timeout: float, max_bytes: int) -> tuple[bytes, str] | _Failure:
    """The image at `url` and its file suffix, or why not."""
    if not url.startswith(("http://", "https://")):
        return _Failure("not_http", True)
    try:
        with session.get(url, timeout=timeout, stream=True) as response:
            if response.status_code != 200:
                code = response.status_code
                return _Failure(f"http_{code}", 400 <= code < 500 and code not in (408, 429))
            robots = response.headers.get("X-Robots-Tag", "").lower()
            if any(word in robots for word in _OPT_OUT):
                return _Failure("opted_out", True)
            # The timeout bounds each wait for bytes; a deadline bounds a body that trickles in.
            data = _read_capped(response, max_bytes, time.monotonic() + 3 * timeout)
    except requests.exceptions.Timeout:
        return _Failure("timeout", False)
    except requests.exceptions.ConnectionError:
        return _Failure("connection", False)
    except requests.exceptions.RequestException:
        return _Failure("request", False)
    if isinstance(data, _Failure):
        return data
    suffix = image_suffix(data)
    return (data, suffix) if suffix else _Failure("not_an_image", True)


def _read_capped(response: requests.Response, max_bytes: int, deadline: float) -> bytes | _Failure:
    chunks, size = [], 0
    for chunk in response.iter_content(1 << 16):
        size += len(chunk)
        if size > max_bytes:
            return _Failure("too_large", True)
        if time.monotonic() > deadline:
            return _Failure("timeout", False)
        chunks.append(chunk)
    return b"".join(chunks)


def image_suffix(data: bytes) -> str | None:
    """The file suffix of an image Pillow can read in a kept format; None for anything else."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
            image.verify()
    except DECODE_ERRORS:
        return None
    return _FORMATS.get(kind or "")
