"""Where Pixglot keeps models, databases, indexes and caches (never inside the source tree)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path("~/.cache/pixglot")


def home() -> Path:
    """PIXGLOT_HOME, or ~/.cache/pixglot; created on first use."""
    path = Path(os.environ.get("PIXGLOT_HOME") or DEFAULT_HOME).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def subdir(*parts: str) -> Path:
    """A directory under PIXGLOT_HOME, created on first use."""
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    return subdir("models")


def collections_dir() -> Path:
    return subdir("collections")


def datasets_dir() -> Path:
    return subdir("datasets")


def cache_dir(kind: str) -> Path:
    """A cache that is always safe to delete, e.g. cache_dir("thumbnails")."""
    return subdir("cache", kind)


def default_db_url() -> str:
    return f"sqlite:///{home() / 'pixglot.db'}"
