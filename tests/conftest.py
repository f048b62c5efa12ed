"""Shared fixtures: every test runs with its own PIXGLOT_HOME so nothing touches the user's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def pixglot_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("pixglot-home")
    monkeypatch.setenv("PIXGLOT_HOME", str(home))
    return home


# Good images under `odd_folder`: stray bytes, a newline, a folder whose name is not UTF-8.
ODD_NAMES = (b"/caf\xe9.jpg", b"/two\nlines.png", b"/\xff\xfe/inside.jpg", b"/plain.jpg")
ODD_FAILURE = b"/bad\xe9.png"


@pytest.fixture
def odd_folder(tmp_path: Path) -> Path:
    """Good images named with stray bytes and a newline, in a folder whose own name is not UTF-8,
    beside a broken file whose name is not UTF-8 either."""
    from indexer.samples import write_image

    folder = tmp_path / "odd"
    folder.mkdir()
    raw = os.fsencode(folder)
    for seed, name in enumerate(ODD_NAMES):
        write_image(Path(os.fsdecode(raw + name)), seed=seed)
    Path(os.fsdecode(raw + ODD_FAILURE)).write_bytes(b"not an image")
    return folder


@pytest.fixture(scope="session")
def tiny_encoder():
    """A real, randomly initialised tiny model (the shipped `tiny-test` config)."""
    import model

    return model.create("tiny-test")


@pytest.fixture
def tiny(pixglot_home: Path, tiny_encoder) -> str:
    """The tiny model saved in this test's PIXGLOT_HOME, by name."""
    import model

    model.save(tiny_encoder, pixglot_home / "models" / "tiny")
    return "tiny"
