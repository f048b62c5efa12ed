"""Emoji-36 built from the system's Noto Color Emoji and CLDR annotations, on a handful of emoji."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from data import cldr, emoji36
from data.captions import load
from data.shards import SCHEMA, export_parquet
from data.xm3600 import LANGUAGES
from ground.errors import InputError
from pixglot.cli import main

WAVES = ["👋", "👋🏻", "👋🏼", "👋🏽", "👋🏾", "👋🏿"]
HEALTH_WORKERS = ["🧑‍⚕️", "👨‍⚕️", "👩🏽‍⚕️"]
OTHERS = ["🐱", "🇫🇷", "#️⃣", "🏳️‍🌈", "🤝", "🫱🏻‍🫲🏿"]  # the handshakes hash to the test split
LANGS = ("en", "de", "mi", "quz", "no")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    directory = tmp_path_factory.mktemp("emoji36")
    summary = emoji36.build(directory, languages=LANGS, only=WAVES + HEALTH_WORKERS + OTHERS)
    return directory, summary


def _records(directory):
    return [
        json.loads(line) for line in (directory / "captions.jsonl").read_text(encoding="utf-8").splitlines()
    ]


def test_every_xm3600_language_has_a_cldr_locale():
    root = cldr.find_cldr_dir()
    locales = {lang: cldr.locale_for(lang, root) for lang in LANGUAGES}
    assert locales["quz"] == "qu" and locales["no"] in ("no", "nb")
    assert all(locales.values()), [lang for lang, loc in locales.items() if loc is None]


def test_build_writes_the_xm3600_layout_with_pictures_and_captions(built):
    directory, summary = built
    records = _records(directory)
    assert summary.emoji == len(records) == len(WAVES + HEALTH_WORKERS + OTHERS)
    by_emoji = {r["emoji"].replace("\ufe0f", ""): r for r in records}
    cat = by_emoji["🐱"]
    assert cat["image/key"] == "u1f431"
    assert cat["en"]["caption"][0] == "cat face"  # the CLDR short name, then the keywords
    assert "cat" in cat["en"]["caption"][1]
    assert cat["quz"]["caption"] and cat["mi"]["caption"]
    flag = by_emoji["🇫🇷"]
    assert flag["image/key"] == "u1f1eb_1f1f7" and "France" in flag["en"]["caption"][0]
    # Pictures are the font's bitmaps: square RGB PNGs, coloured (not blank).
    with Image.open(directory / "images" / "u1f431.png") as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.width == im.height >= 100
        assert len(im.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20
    pictures = {(directory / "images" / f"{r['image/key']}.png").read_bytes() for r in records}
    assert len(pictures) == len(records)  # every skin tone is its own picture
    # The loader reads it without a single issue; the dataset knows its name.
    ds = load(directory)
    assert ds.issues == [] and ds.name == "emoji36" and set(ds.languages) == set(LANGS)


def test_skin_tone_gender_and_hair_variants_share_a_split(built):
    directory, _ = built
    splits = {r["emoji"].replace("\ufe0f", ""): r["split"] for r in _records(directory)}
    assert len({splits[e] for e in WAVES}) == 1
    assert len({splits[e.replace("\ufe0f", "")] for e in HEALTH_WORKERS}) == 1
    assert splits["🤝"] == splits["🫱🏻‍🫲🏿"] == "test"
    split_doc = json.loads((directory / "splits.json").read_text())
    assert sorted(split_doc["train"] + split_doc["test"]) == sorted(
        r["image/key"] for r in _records(directory)
    )
    assert split_doc["base_of"]["u1f44b_1f3ff"] == "u1f44b"


@pytest.mark.parametrize(
    ("variant", "base"),
    [
        ("👋🏿", "👋"),
        ("👩🏽‍⚕️", "🧑‍⚕"),
        ("👨‍🦰", "🧑"),
        ("🧔‍♀️", "🧔"),
        ("🙆‍♂️", "🙆"),
        ("💏🏻", "🧑‍❤‍💋‍🧑"),
        ("👩‍❤️‍💋‍👨", "🧑‍❤‍💋‍🧑"),
        ("🤶🏾", "🧑‍🎄"),
        ("🫱🏻‍🫲🏿", "🤝"),
        ("🐱", "🐱"),
    ],
)
def test_base_emoji_strips_modifiers_and_gender(variant, base):
    assert emoji36.base_emoji(variant) == base
    assert emoji36.split_of(variant) == emoji36.split_of(base)


def test_split_is_about_one_fifth_of_base_emoji_and_keeps_distinct_emoji_apart():
    table = cldr.annotations("en", cldr.find_cldr_dir())
    bases = {emoji36.base_emoji(e) for e in table if len(e) > 1 or ord(e) > 0x2000}
    test_share = sum(emoji36.split_of(b) == "test" for b in bases) / len(bases)
    assert 0.15 < test_share < 0.25
    assert emoji36.base_emoji("🐱") != emoji36.base_emoji("🐶")


def test_dataset_card_counts_languages_and_splits(built):
    directory, summary = built
    card = (directory / "DATASET.md").read_text(encoding="utf-8")
    assert "| quz | qu |" in card and "Noto" in card and "CLDR" in card
    records = _records(directory)
    for lang in LANGS:
        for split in ("train", "test"):
            chosen = [r for r in records if r["split"] == split and lang in r]
            assert summary.per_language[lang][split] == {
                "images": len(chosen),
                "captions": sum(len(r[lang]["caption"]) for r in chosen),
            }


def test_only_rejects_emoji_without_annotations(tmp_path):
    with pytest.raises(InputError, match="no CLDR annotation"):
        emoji36.build(tmp_path, languages=("en",), only=["not an emoji"])


def test_limit_and_keys_select_a_subset(tmp_path):
    summary = emoji36.build(tmp_path, languages=("en",), only=["u1f431", "u1f436", "🐭"], limit=2)
    assert summary.emoji == 2  # the first two in code point order: mouse face U+1F42D, cat face U+1F431
    assert {r["image/key"] for r in _records(tmp_path)} == {"u1f42d", "u1f431"}


def test_export_parquet_round_trip(built, tmp_path):
    directory, summary = built
    out = tmp_path / "shards"
    assert (
        main(
            [
                "data",
                "emoji36",
                "export-parquet",
                str(directory),
                "--out",
                str(out),
                "--split",
                "all",
                "--rows-per-shard",
                "40",
            ]
        )
        == 0
    )
    shards = sorted(out.glob("*.parquet"))
    assert len(shards) > 1
    table = pq.read_table(out)
    assert table.schema.equals(SCHEMA)
    assert table.num_rows == summary.captions
    rows = table.to_pylist()
    records = {r["image/key"]: r for r in _records(directory)}
    for row in rows[:50]:
        assert row["text"] in records[row["key"]][row["language"]]["caption"]
        assert row["image"] == (directory / "images" / f"{row['key']}.png").read_bytes()
        Image.open(io.BytesIO(row["image"])).verify()
    # train + test = all, and the splits do not share an image.
    train = export_parquet(directory, tmp_path / "train", split="train")
    test = export_parquet(directory, tmp_path / "test", split="test")
    assert train.rows + test.rows == table.num_rows
    train_keys = set(pq.read_table(tmp_path / "train").column("key").to_pylist())
    test_keys = set(pq.read_table(tmp_path / "test").column("key").to_pylist())
    assert train_keys and test_keys and not train_keys & test_keys


def test_export_refuses_data_with_issues(built, tmp_path):
    directory, _ = built
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "captions.jsonl").write_text((directory / "captions.jsonl").read_text(encoding="utf-8"))
    (broken / "images").mkdir()  # no pictures at all
    with pytest.raises(Exception, match="data issue"):
        export_parquet(broken, tmp_path / "out", split="all")


def test_a_language_without_cldr_data_is_left_out_and_named(tmp_path):
    summary = emoji36.build(tmp_path, languages=("en", "xx"), only=["🐱"])
    assert summary.missing_languages == ["xx"] and list(summary.per_language) == ["en"]
    assert "left out): xx" in (tmp_path / "DATASET.md").read_text(encoding="utf-8")
