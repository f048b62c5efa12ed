"""Shared fixtures: every test runs with its own PIXGLOT_HOME so nothing touches the user's."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def pixglot_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("pixglot-home")
    monkeypatch.setenv("PIXGLOT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_encoder():  # noqa: ANN201 - model.Encoder; torch is imported only by tests that use it
    """A real, randomly initialised tiny model (the shipped `tiny-test` config)."""
    import model

    return model.create("tiny-test")


@pytest.fixture
def tiny(pixglot_home: Path, tiny_encoder) -> str:  # noqa: ANN001
    """The tiny model saved in this test's PIXGLOT_HOME, by name."""
    import model

    model.save(tiny_encoder, pixglot_home / "models" / "tiny")
    return "tiny"
