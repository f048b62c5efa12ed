"""Training data: the shard index, cached and streamed images, deterministic batches, text pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from train_toy import COLOURS, png, toy_config, write_colour_shards

import rendering
from model.train import data as train_data
from model.train import train
from pixglot.errors import FileFormatError, InputError, PixglotError

RENDERER = {"style": "shaped", "image_size": 64, "patch_size": 16}
PREPROCESSING = {"resize": "squash", "method": "bilinear", "antialias": False, "value_range": [-1, 1]}


def texts_in_order(batch: dict) -> list[np.ndarray]:
    """A batch's texts, left then right, out of their height groups."""
    rows = [row for group in batch["text_groups"] for row in group]
    return [rows[slot] for slot in batch["text_slots"]]


def test_grouping_by_height_keeps_every_text_and_its_place() -> None:
    texts = [np.full((h, 8, 3), i, np.uint8) for i, h in enumerate([32, 16, 48, 16, 32])]
    groups, slots = train_data.group_by_height(texts)
    assert [g.shape for g in groups] == [(2, 16, 8, 3), (2, 32, 8, 3), (1, 48, 8, 3)]
    restored = texts_in_order({"text_groups": groups, "text_slots": slots})
    assert all(np.array_equal(a, b) for a, b in zip(restored, texts, strict=True))


def spec(
    batch_size: int = 8,
    text_pairs: float = 0.0,
    seed: int = 0,
    window: int | None = None,
    trim: bool = True,
    captions_per_image: int = 1,
    text_pair_partner: str = "other_language",
    single_keywords: float = 0.0,
) -> train_data.BatchSpec:
    return train_data.BatchSpec(
        batch_size,
        text_pairs,
        seed,
        64,
        PREPROCESSING,
        RENDERER,
        trim,
        window,
        captions_per_image,
        text_pair_partner,
        single_keywords,
    )


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    return write_colour_shards(tmp_path / "shards", shards=2, row_group_size=3)


def test_index_reads_every_row_without_images(shards: Path) -> None:
    index = train_data.read_index([shards])
    assert len(index) == 16 and index.n_images == 8
    assert sorted(index.languages) == ["de", "en"]
    assert len(index.files) == 2 and len(index.group_file) == 6  # 8 rows per file in groups of 3
    assert len(index.fingerprint) == 64
    only_german = train_data.read_index([shards], languages=["de"])
    assert sorted(only_german.texts) == sorted(german for _, german in COLOURS.values())
    with pytest.raises(InputError, match="no training pairs in the languages fr"):
        train_data.read_index([shards], languages=["fr"])


def test_bad_shards_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(
        pa.table({"key": ["a"], "image": [b"x"], "caption": ["t"], "language": ["en"]}), bad / "a.parquet"
    )
    with pytest.raises(FileFormatError, match=r"a.parquet: lacks the column 'text'"):
        train_data.read_index([bad])
    pq.write_table(
        pa.table({"key": ["a"], "image": [b"x"], "text": pa.array([None], pa.string()), "language": ["en"]}),
        bad / "a.parquet",
    )
    with pytest.raises(FileFormatError, match="column 'text' has 1 empty"):
        train_data.read_index([bad])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no \\*.parquet training shards"):
        train_data.read_index([tmp_path / "empty"])


@pytest.mark.parametrize("window", [None, 2])
def test_epochs_visit_every_row_once_in_a_seeded_order(shards: Path, window: int | None) -> None:
    index = train_data.read_index([shards])
    first = train_data.epoch_order(index, seed=0, epoch=0, window=window)
    assert sorted(first.tolist()) == list(range(16))
    assert np.array_equal(first, train_data.epoch_order(index, seed=0, epoch=0, window=window))
    assert not np.array_equal(first, train_data.epoch_order(index, seed=0, epoch=1, window=window))
    assert not np.array_equal(first, train_data.epoch_order(index, seed=1, epoch=0, window=window))


def test_cached_and_streamed_images_agree(shards: Path) -> None:
    index = train_data.read_index([shards])
    cached = train_data.image_source(index, "auto", 100, window=2)
    streamed = train_data.image_source(index, False, 100, window=2)
    assert isinstance(cached, train_data.CachedImages) and isinstance(streamed, train_data.StreamedImages)
    expected = {name: png(rgb) for name, (rgb, _) in COLOURS.items()}
    for row in range(len(index)):
        assert cached.get(row) == streamed.get(row) == expected[index.keys[index.key_id[row]]]


def test_batches_are_a_function_of_their_number(shards: Path) -> None:
    index = train_data.read_index([shards])
    batches = train_data.PairBatches(index, train_data.image_source(index, True, 100, 2), spec())
    again = train_data.PairBatches(index, train_data.image_source(index, False, 100, 2), spec())
    for g in (0, 1, 5):
        a, b = batches[g], again[g]
        assert a["error"] == ""
        assert np.array_equal(a["images"], b["images"])
        assert np.array_equal(a["right_keys"], b["right_keys"])
        # Each image once, whatever number of its captions the batch holds.
        assert sorted(a["image_keys"].tolist()) == sorted(set(a["right_keys"].tolist()))
        assert a["images"].shape == (len(a["image_keys"]), 64, 64, 3)
    assert batches.batches_per_epoch == 2
    epoch = np.concatenate([batches.rows(0), batches.rows(1)])
    assert sorted(epoch.tolist()) == list(range(16))


def test_batches_of_images_with_several_captions(shards: Path) -> None:
    index = train_data.read_index([shards])
    batches = train_data.PairBatches(
        index, train_data.image_source(index, True, 100, 2), spec(batch_size=8, captions_per_image=2)
    )
    assert batches.batches_per_epoch == 2  # 8 images, 4 per batch
    seen = []
    for g in (0, 1):
        batch = batches[g]
        keys = batch["right_keys"].tolist()
        assert len(batch["image_keys"]) == 4 and len(keys) == 8
        for k in batch["image_keys"].tolist():
            rows = [r for r in batches.rows(g).tolist() if index.key_id[r] == k]
            assert len(rows) == 2 and len({index.language_id[r] for r in rows}) == 2  # both languages
        seen += batch["image_keys"].tolist()
    assert sorted(seen) == list(range(8))
    with pytest.raises(InputError, match="needs the images in memory"):
        train_data.PairBatches(
            index, train_data.image_source(index, False, 100, 2), spec(window=2, captions_per_image=2)
        )


def test_texts_are_trimmed_to_the_rows_they_fill(shards: Path) -> None:
    index = train_data.read_index([shards])
    renderer = rendering.renderer_from_config(RENDERER)
    for trim, expected in (
        (True, lambda t: 16 * max(1, renderer.render_with_report(t).report.rows_used)),
        (False, lambda t: 64),
    ):
        batches = train_data.PairBatches(index, train_data.image_source(index, True, 100, 2), spec(trim=trim))
        batch = batches[0]
        texts = [index.texts[r] for r in batches.rows(0)]
        right = texts_in_order(batch)[len(batch["left_text_keys"]) :]
        assert [t.shape for t in right] == [(expected(t), 64, 3) for t in texts]
    # "schwarz" fills one row of a 64 px canvas; the trimmed canvas is what the renderer drew on top.
    (image, rows), (tall, _) = renderer.render_for_model(["schwarz", "schwarz " * 12], trim=True)
    assert rows == 1 and tall.shape[0] > 16
    assert image.shape == (16, 64, 3) and image.min() < 128
    assert np.array_equal(image, renderer.render("schwarz")[:16])


def test_text_pairs_join_two_languages_of_one_image(shards: Path) -> None:
    index = train_data.read_index([shards])
    batches = train_data.PairBatches(
        index, train_data.image_source(index, True, 100, 2), spec(text_pairs=0.25)
    )
    batch = batches[3]
    rows = batches.rows(3)
    assert len(batch["left_text_keys"]) == 2 and len(texts_in_order(batch)) == 2 + 8
    assert sorted(batch["image_keys"].tolist()) == sorted(set(index.key_id[rows[:6]].tolist()))
    assert np.array_equal(batch["left_text_keys"], index.key_id[rows[6:]])
    rng = np.random.default_rng(0)
    for row in range(len(index)):
        partner = batches.partner(row, rng)
        assert index.key_id[partner] == index.key_id[row]
        assert index.language_id[partner] != index.language_id[row]


def test_held_out_split_by_key(shards: Path) -> None:
    index = train_data.read_index([shards])
    kept, held = index.split_by_key(0.5)
    assert len(kept) + len(held) == 16
    assert not {kept.keys[k] for k in kept.key_id} & {held.keys[k] for k in held.key_id}
    evaluation = train_data.held_out(held, train_data.image_source(held, True, 100, 2), max_images=2)
    assert len(evaluation.images) == 2
    for texts, owners in evaluation.captions.values():
        assert len(texts) == len(owners) and set(owners) <= {0, 1}


def test_an_undecodable_image_stops_training_naming_its_key(tmp_path: Path) -> None:
    shards = write_colour_shards(tmp_path / "shards", shards=1)
    table = pq.read_table(shards / "colours-00000.parquet")
    images = [
        b"not an image" if key == "red" else image
        for key, image in zip(table["key"].to_pylist(), table["image"].to_pylist(), strict=True)
    ]
    pq.write_table(
        table.set_column(1, "image", pa.array(images, pa.binary())), shards / "colours-00000.parquet"
    )
    config = toy_config(shards, tmp_path / "out", steps=4, data={"batch_size": 16})
    with pytest.raises(PixglotError, match="training data: image of key 'red': "):
        train(config)


def word_list_shards(tmp_path: Path) -> Path:
    rows = [
        ("red", "red", "en"),
        ("red", "red, colour", "en"),
        ("red", "rot", "de"),
        ("blue", "blue", "en"),
        ("blue", "blau", "de"),
        ("blue", "blau, Farbe", "de"),
    ]
    table = pa.table(
        {
            "key": [r[0] for r in rows],
            "image": [png((200, 0, 0))] * 6,
            "text": [r[1] for r in rows],
            "language": [r[2] for r in rows],
        }
    )
    (tmp_path / "s").mkdir()
    pq.write_table(table, tmp_path / "s" / "a.parquet")
    return tmp_path / "s"


def test_same_language_partners(tmp_path: Path) -> None:
    index = train_data.read_index([word_list_shards(tmp_path)])
    source = train_data.image_source(index, True, 100, 2)
    same = train_data.PairBatches(index, source, spec(batch_size=2, text_pair_partner="same_language"))
    other = train_data.PairBatches(index, source, spec(batch_size=2))
    rng = np.random.default_rng(0)
    text = {t: i for i, t in enumerate(index.texts)}
    assert index.texts[same.partner(text["red"], rng)] == "red, colour"
    assert index.texts[same.partner(text["blau"], rng)] == "blau, Farbe"
    assert index.texts[same.partner(text["rot"], rng)] in ("red", "red, colour")  # no other German caption
    assert index.texts[other.partner(text["rot"], rng)] in ("red", "red, colour")
    assert index.texts[other.partner(text["blue"], rng)] in ("blau", "blau, Farbe")


def test_single_keywords_cut_word_lists_to_one_of_their_words(tmp_path: Path) -> None:
    index = train_data.read_index([word_list_shards(tmp_path)])
    source = train_data.image_source(index, True, 100, 2)
    rows = list(range(len(index)))
    as_is = train_data.PairBatches(index, source, spec(batch_size=2)).texts(rows, 0)
    assert as_is == index.texts
    always = train_data.PairBatches(index, source, spec(batch_size=2, single_keywords=1.0))
    shown = [always.texts(rows, batch) for batch in range(20)]
    for texts in shown:
        for text, original in zip(texts, index.texts, strict=True):
            assert text == original if ", " not in original else text in original.split(", ")
    # Both words of each list turn up, and a batch shows the same words every time it is rebuilt.
    lists = [i for i, t in enumerate(index.texts) if ", " in t]
    assert all({texts[i] for texts in shown} == set(index.texts[i].split(", ")) for i in lists)
    assert shown[3] == always.texts(rows, 3)
    half = train_data.PairBatches(index, source, spec(batch_size=2, single_keywords=0.5))
    cut = sum(half.texts(rows, batch)[i] != index.texts[i] for batch in range(200) for i in lists)
    assert 150 < cut < 250  # of 400 draws
