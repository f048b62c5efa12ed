"""Pictures of a dataset in the XM3600 layout are named by their captions (an emoji by its CLDR
name), and the language a query is written in is found from those captions."""

from __future__ import annotations

import json
import os
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from caption_support import write_dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from data.picture_names import names_of, query_language

CAT = {
    "image/key": "u1f431",
    "en": {"caption": ["cat face", "cat, face, pet"]},
    "ru": {"caption": ["морда кошки", "кошка, морда"]},
    "ja": {"caption": ["猫の顔", "猫, 顔"]},
    "zh": {"caption": ["猫脸", "猫 | 脸"]},
}
DOG = {
    "image/key": "u1f436",
    "en": {"caption": ["dog face", "dog, face, pet"]},
    "ru": {"caption": ["морда собаки", "собака, морда"]},
}


@pytest.fixture
def emoji(tmp_path: Path) -> Path:
    lines = [json.dumps(record, ensure_ascii=False) for record in (CAT, DOG)]
    return write_dataset(tmp_path / "emoji", lines, ["u1f431.png", "u1f436.png"])


def test_a_dataset_picture_is_named_in_each_of_its_languages(emoji: Path) -> None:
    cat = names_of(str(emoji / "images" / "u1f431.png"))
    assert cat["en"][0] == "cat face" and cat["ru"][0] == "морда кошки" and cat["ja"][0] == "猫の顔"
    assert set(cat) == {"en", "ru", "ja", "zh"}
    assert set(names_of(str(emoji / "images" / "u1f436.png"))) == {"en", "ru"}


def test_pictures_outside_a_dataset_have_no_names(emoji: Path, tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    assert names_of(str(tmp_path / "images" / "u1f431.png")) == {}  # no captions.jsonl beside it
    assert names_of(str(emoji / "u1f431.png")) == {}  # not under images/
    assert names_of(str(emoji / "images" / "unlisted.png")) == {}


def test_edited_captions_are_read_anew_and_unreadable_ones_name_nothing(emoji: Path) -> None:
    path = str(emoji / "images" / "u1f431.png")
    assert names_of(path)["en"][0] == "cat face"
    captions = emoji / "captions.jsonl"
    captions.write_text(json.dumps({**CAT, "en": {"caption": ["grinning cat"]}}) + "\n", encoding="utf-8")
    stat = captions.stat()
    os.utime(captions, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert names_of(path)["en"] == ("grinning cat",)
    captions.write_bytes(b"\xff\xfe not json\n")
    os.utime(captions, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert names_of(path) == {}


def test_the_query_language_is_the_one_whose_captions_hold_the_query(emoji: Path) -> None:
    pictures = [names_of(str(emoji / "images" / name)) for name in ("u1f431.png", "u1f436.png")]
    assert query_language("кошка", pictures) == "ru"
    assert query_language("МОРДА", pictures) == "ru"  # case folded
    assert query_language("pet", pictures) == "en"
    assert query_language("猫", pictures) is None  # Japanese and Chinese both write it: a tie
    assert query_language("猫の", pictures) == "ja"
    assert query_language("giraffe", pictures) is None
    assert query_language("   ", pictures) is None


LANGUAGES = st.sampled_from(["en", "ru", "ja", "ar"])
PICTURES = st.lists(
    st.dictionaries(LANGUAGES, st.lists(st.text(max_size=8), min_size=1, max_size=3).map(tuple))
)


@settings(max_examples=300, deadline=None)
@given(query=st.text(max_size=6), pictures=PICTURES)
def test_any_query_gives_no_language_or_the_one_most_captions_hold(query: str, pictures: list) -> None:
    language = query_language(query, pictures)
    if language is None:
        return
    folded = unicodedata.normalize("NFKC", query).casefold().strip()
    holding = Counter(
        lang
        for names in pictures
        for lang, captions in names.items()
        if any(folded in unicodedata.normalize("NFKC", caption).casefold() for caption in captions)
    )
    assert holding[language] > max((n for lang, n in holding.items() if lang != language), default=0)
