"""Where Pixglot keeps what it writes (never inside the source tree).

What cannot be made again without the user (models, the database, collections, datasets, evaluation
reports) is data, in the user's data directory (`~/.local/share/pixglot` on Linux); thumbnails,
embeddings, rendered texts and compiled code are cache, in the user's cache directory
(`~/.cache/pixglot`), and always safe to delete. PIXGLOT_HOME puts both in one folder instead
(caches under its `cache/`). So does a home from before the split: `~/.cache/pixglot` holding a
database, models or collections keeps being used whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

LEGACY_HOME = Path("~/.cache/pixglot")
_LEGACY_MARKS = ("pixglot.db", "models", "collections")


def _roots() -> tuple[Path, Path]:
    """(data root, cache root)."""
    home = os.environ.get("PIXGLOT_HOME")
    if home:
        root = Path(home).expanduser()
        return root, root / "cache"
    legacy = LEGACY_HOME.expanduser()
    if any((legacy / mark).exists() for mark in _LEGACY_MARKS):
        return legacy, legacy / "cache"
    return platformdirs.user_data_path("pixglot"), platformdirs.user_cache_path("pixglot")


def data_home() -> Path:
    """The folder of Pixglot's data (PIXGLOT_HOME when set); created on first use."""
    path = _roots()[0]
    path.mkdir(parents=True, exist_ok=True)
    return path


def subdir(*parts: str) -> Path:
    """A data directory, created on first use."""
    path = data_home().joinpath(*parts)
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
    path = _roots()[1] / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_db_url() -> str:
    return f"sqlite:///{data_home() / 'pixglot.db'}"
