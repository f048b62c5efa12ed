"""The vocabulary oracle of bench/emoji36_ceiling.py on a small train/test split written here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from caption_support import write_dataset

from data.captions import load

_SPEC = importlib.util.spec_from_file_location(
    "emoji36_ceiling", Path(__file__).resolve().parents[1] / "bench" / "emoji36_ceiling.py"
)
ceiling = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ceiling)


def test_words_keep_their_marks_and_unspaced_scripts_become_characters_and_pairs():
    words = {"cat", "face", "grinning", "no", "vacancy"}
    assert ceiling.units("Cat face: grinning, “no vacancy”", "en") == words
    # Devanagari vowel signs are marks: the word stays whole.
    assert ceiling.units("बिल्ली, चेहरा", "hi") == {"बिल्ली", "चेहरा"}
    assert ceiling.units("猫の顔", "ja") == {"猫", "の", "顔", "猫の", "の顔"}


def test_expected_recall_breaks_ties_at_random():
    scores = np.array([[3.0, 1.0, 1.0], [1.0, 1.0, 1.0], [2.0, 0.0, 2.0]])
    recall = ceiling.expected_recall(scores, np.array([0, 2, 1]), ks=(1, 2))
    # Row 0 is first; row 1 ties with all three (1/3 at k=1, 2/3 at k=2); row 2 has two above it.
    assert recall == pytest.approx([(1 + 1 / 3 + 0) / 3, (1 + 2 / 3 + 0) / 3])


def test_the_oracle_uses_only_query_words_seen_in_training(tmp_path):
    captions = {
        "t1": ("train", "red apple"),
        "t2": ("train", "blue car"),
        "x1": ("test", "red kangaroo"),
        "x2": ("test", "blue kangaroo"),
        "x3": ("test", "green wombat"),
    }
    lines = [
        json.dumps({"image/key": k, "split": s, "en": {"caption": [c]}}) for k, (s, c) in captions.items()
    ]
    root = write_dataset(tmp_path / "e", lines, [f"{key}.png" for key in captions])
    train, test = load(root, split="train"), load(root, split="test")
    recall = ceiling.oracle_recall(train, test, "en", "all")
    # "red" and "blue" single out x1 and x2; nothing of "green wombat" was seen, so x3 ties with
    # all three test pictures. Had "kangaroo" or "wombat" been usable, x3 would be found first.
    assert recall[0] == pytest.approx((1 + 1 + 1 / 3) / 3)
    assert recall[1] == pytest.approx(1.0)
