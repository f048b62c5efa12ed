"""Resumable HTTP downloads: bytes go to `<file>.part`; an interrupted download resumes by HTTP Range."""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from pixglot.errors import PixglotError

_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(PixglotError):
    pass


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def download(url: str, dest: str | Path, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Fetch `url` into `dest` and return `dest`; an existing `dest` is taken as complete.

    The bytes land in `dest.part` first and the file is renamed when complete, so `dest` never holds a
    partial download. Run again after an interruption: the transfer resumes from the `.part` size when
    the server honours Range requests and starts over when it does not.
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    for attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "pixglot"})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as err:
            if err.code == 416 and offset and attempt == 0:
                # The .part does not fit what the server has now (e.g. the file changed): start over.
                part.unlink()
                continue
            raise DownloadError(f"download of {url} failed: HTTP {err.code} {err.reason}") from err
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            raise DownloadError(f"download of {url} failed: {err}; run again to resume") from err
        with response:
            start, total = _resume_point(response, offset)
            _copy(response, part, start, total, url, dest.name, progress)
        break
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(
            f"download of {url} stopped at {size} of {total} bytes; run again to resume from {part}"
        )
    os.replace(part, dest)
    return dest


def _resume_point(response, offset: int) -> tuple[int, int | None]:  # noqa: ANN001 - http.client response
    """Where the body starts in the file, and the file's full size when the server says it."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != offset:
            raise DownloadError(f"server answered a Range request with an unexpected range: {match}")
        return offset, None if match.group(3) == "*" else int(match.group(3))
    # 200: the server sends the whole file (no Range support, or nothing to resume).
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _copy(response, part: Path, start: int, total: int | None, url: str, label: str, progress: bool) -> None:  # noqa: ANN001
    mode = "ab" if start else "wb"
    with (
        open(part, mode) as out,
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
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, http.client.HTTPException) as err:
                raise DownloadError(f"download of {url} interrupted: {err}; run again to resume") from err
            if not chunk:
                break
            out.write(chunk)
            bar.update(len(chunk))
