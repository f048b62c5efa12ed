"""Pixglot's one downloader, for datasets and checkpoints alike: resumable, verified, retried.

Bytes go to `<dest>.part`, and the file takes its name only when complete (and, when a sha256 is
expected, only when it matches), so `dest` never holds a partial or wrong download. A transfer cut
short resumes by HTTP Range from the `.part`'s size, within the same call up to `retries` times
with exponential backoff, and in a later call after that; a server that ignores Range gets the
whole file again. Connection failures and 429/5xx answers are retried by urllib3's `Retry`.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from ground.errors import PixglotError

RETRIES = 3
BACKOFF_S = 0.5  # the first retry's wait; each next one waits twice as long
_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_FULL_SIZE = re.compile(r"bytes \*/(\d+)")


class DownloadError(PixglotError):
    """A download that failed, or whose bytes do not match their checksum."""


class UnreachableError(DownloadError):
    """The server could not be reached at all (no network, a wrong host, a refused connection)."""


class _Interrupted(Exception):
    """The body stopped before its end: resumable."""


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def sha256_file(path: Path, chunk: int = _CHUNK) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = RETRIES,
) -> str:
    """Fetch `url` into `dest`; returns the file's sha256, which must equal `sha256` when given.

    An existing `dest` is taken as complete, unless it does not match `sha256`: then it is fetched
    again.
    """
    dest = Path(dest)
    if dest.exists():
        digest = sha256_file(dest)
        if sha256 is None or digest == sha256.lower():
            return digest
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    with _session(retries) as session:
        for attempt in range(retries + 1):
            try:
                _transfer(session, url, part, dest.name, timeout, progress)
                break
            except _Interrupted as err:
                if attempt == retries:
                    raise DownloadError(f"{url}: interrupted ({err}); run again to resume") from None
                time.sleep(BACKOFF_S * 2**attempt)
    digest = sha256_file(part)
    if sha256 and digest != sha256.lower():
        part.unlink()
        raise DownloadError(
            f"{url}: checksum mismatch (sha256 {digest}, expected {sha256}); the download was removed, "
            "run the command again to fetch it anew"
        )
    os.replace(part, dest)
    return digest


def _session(retries: int) -> requests.Session:
    session = requests.Session()
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=BACKOFF_S,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=("GET",),
        raise_on_status=False,
    )
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.headers.update({"User-Agent": "pixglot", "Accept-Encoding": "identity"})
    return session


def _transfer(
    session: requests.Session, url: str, part: Path, label: str, timeout: float, progress: bool
) -> None:
    """One request from the `.part`'s size to the end; raises _Interrupted if the body stops early."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = session.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.exceptions.ConnectionError as err:
        raise UnreachableError(f"{url}: cannot reach the server ({_cause(err)})") from None
    except requests.exceptions.RequestException as err:
        raise DownloadError(f"{url}: {_cause(err)}") from None
    with response:
        if response.status_code == 416 and offset:
            size = _FULL_SIZE.fullmatch(response.headers.get("Content-Range", "").strip())
            if size and int(size.group(1)) == offset:
                return  # nothing past the .part: it is the whole file
            part.unlink()  # the .part does not fit the file the server has now: start over
            raise _Interrupted("the partial file does not match the server's")
        if response.status_code not in (200, 206):
            raise DownloadError(f"{url}: HTTP {response.status_code} {response.reason}")
        start, total = _resume_point(response, offset, url)
        _copy(response, part, start, total, label, progress)


def _cause(err: BaseException) -> str:
    """The innermost reason of a requests error (e.g. "Connection refused"), not its long chain."""
    reason = str(err)
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            reason = cause.strerror
        cause = cause.__cause__ or cause.__context__
    return reason


def _resume_point(response: requests.Response, offset: int, url: str) -> tuple[int, int | None]:
    """Where the body starts in the file, and the file's full size when the server says it."""
    if response.status_code == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != offset:
            raise DownloadError(f"{url}: the server resumed at the wrong place ({match})")
        return offset, None if match.group(3) == "*" else int(match.group(3))
    length = response.headers.get("Content-Length")  # 200: the whole file, from its first byte
    return 0, int(length) if length and length.isdigit() else None


def _copy(
    response: requests.Response, part: Path, start: int, total: int | None, label: str, progress: bool
) -> None:
    done = start
    with (
        open(part, "ab" if start else "wb") as out,
        tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            disable=not progress,
            leave=False,
        ) as bar,
    ):
        try:
            # read1 hands over what has arrived, so a cut connection loses no byte that came before it.
            while chunk := response.raw.read1(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                bar.update(len(chunk))
        except (OSError, urllib3.exceptions.HTTPError) as err:
            raise _Interrupted(f"after {done} bytes: {_cause(err)}") from None
    if total is not None and done != total:
        raise _Interrupted(f"got {done} of {total} bytes")
