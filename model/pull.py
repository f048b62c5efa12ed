"""Download an official CLIPPO checkpoint and install it as a Pixglot model.

Downloads go to PIXGLOT_HOME/cache/downloads/<name>.npz (through `ground.download`: resumed,
retried); the finished file's sha256 is checked when known and recorded in the model's provenance.
PIXGLOT_CHECKPOINT_URL (or `base_url`) replaces the download location, e.g. for a mirror.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ground import home
from ground.download import UnreachableError, download
from ground.errors import InputError
from model.convert import convert
from model.encoder import CONFIG_FILE

BASE_URL_ENV = "PIXGLOT_CHECKPOINT_URL"
_REGISTRY_FILE = Path(__file__).with_name("official.json")


def official_checkpoints() -> dict[str, dict]:
    """name -> {"description", "knows", "sha256"} of the checkpoints `pull` knows."""
    return json.loads(_REGISTRY_FILE.read_text())["checkpoints"]


def base_url(override: str | None = None) -> str:
    url = override or os.environ.get(BASE_URL_ENV) or json.loads(_REGISTRY_FILE.read_text())["base_url"]
    return url.rstrip("/")


def checkpoint_url(name: str, base: str | None = None) -> str:
    return f"{base_url(base)}/{name}.npz"


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
    try:
        download(url, npz, sha256=expected, progress=progress)
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
