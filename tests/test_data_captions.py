"""The XM3600-layout loader on small files written like the real captions.jsonl, good and bad."""

from __future__ import annotations

import json

import pytest
from caption_support import write_dataset

from data.captions import load
from ground.errors import FileFormatError, InputError


def _line(key: str, **languages: list[str]) -> str:
    record: dict = {"image/key": key}
    for lang, captions in languages.items():
        # XM3600 stores a tokenized copy of each caption next to it.
        record[lang] = {"caption": captions, "caption/tokenized": [c.lower() for c in captions]}
    return json.dumps(record, ensure_ascii=False)


def test_reads_the_xm3600_format(tmp_path):
    root = write_dataset(
        tmp_path / "xm",
        [
            _line(
                "000411001ff7dd4f",
                en=["A red car.", "A parked car."],
                de=["Ein rotes Auto."],
                quz=["Puka awto."],
            ),
            _line("00085cbea4e2f3a7", en=["A dog on grass."], de=["Ein Hund.", "Hund im Gras."]),
        ],
        ["000411001ff7dd4f.jpg", "00085cbea4e2f3a7.png"],
    )
    ds = load(root)
    assert ds.name == "xm3600" and ds.issues == []
    assert ds.keys == ["000411001ff7dd4f", "00085cbea4e2f3a7"]
    assert [p.name for p in ds.image_paths] == ["000411001ff7dd4f.jpg", "00085cbea4e2f3a7.png"]
    assert ds.languages == ["de", "en", "quz"] == ds.available_languages
    assert ds.pairs("en") == (["A red car.", "A parked car.", "A dog on grass."], [0, 0, 1])
    assert ds.pairs("de", "first") == (["Ein rotes Auto.", "Ein Hund."], [0, 1])
    assert ds.pairs("quz") == (["Puka awto."], [0])  # a language with fewer images
    assert ds.pairs("en", images={1}) == (["A dog on grass."], [1])


def test_language_selection_and_unknown_codes(tmp_path):
    root = write_dataset(tmp_path / "xm", [_line("k1", en=["a"], fr=["b"])], ["k1.jpg"])
    ds = load(root, languages=["fr", "xx"])
    assert ds.languages == ["fr"]
    assert [(i.kind, i.where) for i in ds.issues] == [("unknown_language", "language 'xx'")]
    assert "present: en, fr" in ds.issues[0].reason


def test_bad_lines_missing_images_and_empty_captions_are_reported_with_line_or_key(tmp_path):
    lines = [
        _line("good", en=["a cat"]),
        '{"image/key": "cut", "en": {"caption": ["trunc',  # truncated JSON line
        _line("nofile", en=["no image"]),
        _line("empty", en=[], de=["ein Bild"]),
        json.dumps({"en": {"caption": ["no key"]}}),
        json.dumps({"image/key": "../escape", "en": {"caption": ["path"]}}),
        _line("good", en=["again"]),
        json.dumps({"image/key": "badcap", "en": {"caption": "not a list"}}),
        _line("blank", en=["  ", "real"]),
    ]
    root = write_dataset(tmp_path / "xm", lines, ["good.jpg", "empty.jpg", "badcap.jpg", "blank.jpg"])
    ds = load(root)
    found = {(i.kind, i.where) for i in ds.issues}
    assert found == {
        ("bad_line", "captions.jsonl:2"),
        ("missing_image", "captions.jsonl:3"),
        ("empty_captions", "captions.jsonl:4"),
        ("bad_key", "captions.jsonl:5"),
        ("bad_key", "captions.jsonl:6"),
        ("duplicate_key", "captions.jsonl:7"),
        ("bad_captions", "captions.jsonl:8"),
        ("empty_captions", "captions.jsonl:9"),
    }
    assert any("'nofile'" in str(i) for i in ds.issues)
    # The usable rest: 'empty' is in German only, 'blank' keeps its real caption.
    assert ds.keys == ["good", "empty", "badcap", "blank"]
    assert ds.pairs("en") == (["a cat", "real"], [0, 3])
    assert ds.pairs("de") == (["ein Bild"], [1])


def test_split_field_selects_lines_and_dataset_json_names_the_dataset(tmp_path):
    lines = [
        json.dumps({"image/key": "a", "split": "train", "en": {"caption": ["x"]}}),
        json.dumps({"image/key": "b", "split": "test", "emoji": "🐱", "en": {"caption": ["y"]}}),
    ]
    root = write_dataset(tmp_path / "e", lines, ["a.png", "b.png"])
    (root / "dataset.json").write_text(json.dumps({"name": "emoji36"}))
    ds = load(root, split="test")
    assert ds.keys == ["b"] and ds.name == "emoji36/test" and ds.issues == []
    with pytest.raises(InputError, match="no line has a 'split'"):
        load(write_dataset(tmp_path / "x", [_line("k", en=["z"])], ["k.jpg"]), split="test")


def test_missing_captions_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileFormatError, match="captions.jsonl"):
        load(tmp_path)


def test_word_queries_are_the_words_of_word_lists_relevant_to_every_image_that_has_them(tmp_path):
    root = write_dataset(
        tmp_path / "emoji",
        [
            _line("u1f431", en=["cat face", "cat, face, pet"], de=["Katzengesicht", "Gesicht, Katze"]),
            _line("u1f408", en=["cat"]),  # a name that is itself one word of the lists
            _line("u1f46a", en=["family: man, woman, boy", "boy, family, man, woman"]),
            _line("u1f3f3", en=["white flag"]),  # no word list, no word of one: no query finds it
        ],
        ["u1f431.png", "u1f408.png", "u1f46a.png", "u1f3f3.png"],
    )
    ds = load(root)
    words, pair_word, pair_image = ds.word_queries("en")
    relevant = {(words[w], i) for w, i in zip(pair_word, pair_image, strict=True)}
    assert words == sorted(words) and len(set(words)) == len(words)
    assert {"cat", "face", "pet", "boy", "family", "man", "woman"} <= set(words)
    assert "cat face" not in words and "white flag" not in words  # names are not one-word queries
    assert ("cat", 0) in relevant and ("cat", 1) in relevant and ("cat", 2) not in relevant
    assert ("woman", 2) in relevant and not any(i == 3 for _, i in relevant)
    assert {w for w, i in relevant if i == 0} == {"cat", "face", "pet"}
    assert ds.word_queries("de") == (["Gesicht", "Katze"], [0, 1], [0, 0])
    assert ds.word_queries("en", images={1, 3}) == ([], [], [])  # no word list among them
