"""`pixglot demo`'s set-up, headless: Emoji-36 built and indexed into the `demo` collection."""

from __future__ import annotations

import pytest

import indexer
import model
from pixglot import demo
from pixglot.cli import main


def test_demo_without_its_model_fails_before_building_anything(pixglot_home, capsys):
    assert main(["demo", "--no-ui"]) == 2
    assert "no model 'demo'" in capsys.readouterr().err
    assert not (pixglot_home / "datasets").exists() or not any((pixglot_home / "datasets").iterdir())


def test_demo_builds_indexes_and_answers_queries(pixglot_home, tiny_encoder):
    # The tiny test model stands in for the shipped one, so this checks the plumbing, not quality.
    model.save(tiny_encoder, pixglot_home / "models" / demo.MODEL)
    images = demo.prepare(only=["🐱", "🐶", "🌵"], progress=False)
    assert sorted(p.suffix for p in images.iterdir()) == [".png"] * 3
    collection = indexer.open_collection(demo.COLLECTION)
    assert collection.count() == 3
    hits = indexer.search(demo.COLLECTION, "猫", k=3)
    assert len(hits) == 3 and {h.path for h in hits} == {str(p) for p in images.iterdir()}
    assert demo.prepare(only=["🐱", "🐶", "🌵"], progress=False) == images  # idempotent
    assert indexer.open_collection(demo.COLLECTION).count() == 3


def test_demo_is_a_cli_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--help"])
    assert exit_.value.code == 0 and "--no-ui" in capsys.readouterr().out
