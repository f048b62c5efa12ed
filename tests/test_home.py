"""Where Pixglot writes: data and caches apart by default, together under PIXGLOT_HOME, and a home
from before the split used whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from ground import home


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with an empty home folder and no PIXGLOT_HOME or XDG settings."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("PIXGLOT_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_data_and_caches_go_to_the_users_data_and_cache_folders(user: Path) -> None:
    data, cache = user / ".local" / "share" / "pixglot", user / ".cache" / "pixglot"
    assert home.models_dir() == data / "models" and home.collections_dir() == data / "collections"
    assert home.datasets_dir() == data / "datasets"
    assert home.default_db_url() == f"sqlite:///{data / 'pixglot.db'}"
    assert home.cache_dir("thumbnails") == cache / "thumbnails" and (cache / "thumbnails").is_dir()


def test_xdg_folders_are_followed(user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(user / "d"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(user / "c"))
    assert home.models_dir() == user / "d" / "pixglot" / "models"
    assert home.cache_dir("embeddings") == user / "c" / "pixglot" / "embeddings"


def test_pixglot_home_holds_both(user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXGLOT_HOME", str(user / "here"))
    assert home.models_dir() == user / "here" / "models"
    assert home.default_db_url() == f"sqlite:///{user / 'here' / 'pixglot.db'}"
    assert home.cache_dir("thumbnails") == user / "here" / "cache" / "thumbnails"


@pytest.mark.parametrize("mark", ["pixglot.db", "models", "collections"])
def test_a_home_from_before_the_split_keeps_being_used_whole(user: Path, mark: str) -> None:
    legacy = user / ".cache" / "pixglot"
    legacy.mkdir(parents=True)
    (legacy / mark).mkdir() if mark != "pixglot.db" else (legacy / mark).write_bytes(b"")
    assert home.models_dir() == legacy / "models"
    assert home.default_db_url() == f"sqlite:///{legacy / 'pixglot.db'}"
    assert home.cache_dir("thumbnails") == legacy / "cache" / "thumbnails"
    assert not (user / ".local").exists()
