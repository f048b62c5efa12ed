"""Shared fixtures: every test runs with its own PIXGLOT_HOME so nothing touches the user's."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def pixglot_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("pixglot-home")
    monkeypatch.setenv("PIXGLOT_HOME", str(home))
    return home
