"""Download an official CLIPPO checkpoint and install it as a Pixglot model.

Downloads go to PIXGLOT_HOME/cache/downloads/<name>.npz.part and resume where they stopped (HTTP
Range); the finished file's sha256 is checked when known and recorded in the model's provenance.
PIXGLOT_CHECKPOINT_URL (or `base_url`) replaces the download location, e.g. for a mirror.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from model.convert import convert, sha256_file
from model.encoder import CONFIG_FILE
from pixglot import home
from pixglot.errors import InputError, PixglotError

BASE_URL_ENV = "PIXGLOT_CHECKPOINT_URL"
_REGISTRY_FILE = Path(__file__).with_name("official.json")
_BLOCK = 1 << 20
_TIMEOUT_S = 60


class DownloadError(PixglotError):
    """A download that failed or does not match its checksum."""


class UnreachableError(DownloadError):
    """The server could not be reached at all (no network, a wrong host, a refused connection)."""


def official_checkpoints() -> dict[str, dict]:
    """name -> {"description", "knows", "sha256"} of the checkpoints `pull` knows."""
    return json.loads(_REGISTRY_FILE.read_text())["checkpoints"]


def base_url(override: str | None = None) -> str:
    url = override or os.environ.get(BASE_URL_ENV) or json.loads(_REGISTRY_FILE.read_text())["base_url"]
    return url.rstrip("/")


def checkpoint_url(name: str, base: str | None = None) -> str:
    return f"{base_url(base)}/{name}.npz"


def download(url: str, dest: Path, sha256: str | None = None, progress: bool = True) -> str:
    """Fetch `url` into `dest` (atomically, resuming a `dest`.part left by an earlier attempt);
    returns the file's sha256, which must equal `sha256` when given."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset)
    except _AlreadyComplete:
        response = None
    if response is not None:
        with response:
            total = _expected_total(response, offset)
            if response.status != 206:
                offset = 0  # the server sent the whole file: start over
            _copy(response, part, offset, total, url, progress)
    digest = sha256_file(part)
    if sha256 and digest != sha256.lower():
        part.unlink()
        raise DownloadError(
            f"{url}: checksum mismatch (sha256 {digest}, expected {sha256}); the download was removed, "
            "run the command again to fetch it anew"
        )
    os.replace(part, dest)
    return digest


class _AlreadyComplete(Exception):
    pass


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    headers = {"User-Agent": "pixglot", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # Nothing left past `offset`: the partial file is complete if the server's size says so.
            size = re.search(r"/(\d+)", err.headers.get("Content-Range", ""))
            if size and int(size.group(1)) == offset:
                raise _AlreadyComplete from None
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UnreachableError(f"{url}: cannot reach the server ({reason})") from None


def _expected_total(response: http.client.HTTPResponse, offset: int) -> int | None:
    if response.status == 206:
        match = re.search(r"bytes (\d+)-\d+/(\d+)", response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            raise DownloadError(f"{response.url}: the server resumed at the wrong place")
        return int(match.group(2))
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _copy(response, part: Path, offset: int, total: int | None, url: str, progress: bool) -> None:
    done = offset
    with (
        open(part, "ab" if offset else "wb") as f,
        tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=Path(part.stem).name,
            disable=not progress,
        ) as bar,
    ):
        try:
            while block := response.read(_BLOCK):
                f.write(block)
                done += len(block)
                bar.update(len(block))
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(
                f"{url}: interrupted after {done} bytes ({err}); run the command again to resume"
            ) from None
    if total is not None and done != total:
        raise DownloadError(f"{url}: got {done} of {total} bytes; run the command again to resume")


def pull(
    name: str,
    base: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    keep_download: bool = False,
    progress: bool = True,
) -> Path:
    """Download the official checkpoint `name` and install it as PIXGLOT_HOME/models/<name>."""
    known = official_checkpoints()
    if name not in known:
        raise InputError(f"unknown checkpoint {name!r}; official CLIPPO checkpoints: {', '.join(known)}")
    out = home.models_dir() / name
    if (out / CONFIG_FILE).exists() and not force:
        return out
    expected = sha256 or known[name].get("sha256")
    url = checkpoint_url(name, base)
    npz = home.cache_dir("downloads") / f"{name}.npz"
    # A finished download from an earlier run (one whose conversion failed, or --keep-download) is
    # reused if it matches the expected checksum.
    if npz.exists() and expected and sha256_file(npz) != expected.lower():
        npz.unlink()
    if not npz.exists():
        try:
            download(url, npz, expected, progress)
        except UnreachableError as err:
            knows = "".join(f" --knows {kind}" for kind in known[name]["knows"])
            raise UnreachableError(
                f"{err}. Without a network: copy {name}.npz here from a machine that has one, then "
                f"`pixglot models convert {name}.npz --name {name}{knows} --out {out}` installs it"
            ) from None
    provenance = {"url": url, "checkpoint": name, "sha256_verified": bool(expected)}
    staging = home.models_dir() / f".{name}.converting"
    shutil.rmtree(staging, ignore_errors=True)
    convert(npz, staging, name=name, provenance=provenance, knows=known[name]["knows"])
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    if not keep_download:
        npz.unlink()
    return out
