"""Training data: the shard index, cached and streamed images, deterministic batches, text pairs,
the grouping of texts, and batches gathered on the device from cached pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from train_toy import COLOURS, png, toy_config, write_colour_shards

import rendering
from ground.errors import FileFormatError, InputError, PixglotError
from model.preprocess import prepare_image, to_value_range
from rendering.text_cache import TextCache
from training import data as train_data
from training import train
from training.pixels import TrainingPixels, decode_pictures

RENDERER = {"style": "shaped", "image_size": 64, "patch_size": 16}
PREPROCESSING = {"resize": "squash", "method": "bilinear", "antialias": False, "value_range": [-1, 1]}


def test_grouping_by_height_keeps_every_text_and_its_place() -> None:
    rows = np.array([2, 1, 3, 1, 2])
    order, groups, slots = train_data.group_texts(rows, chunks=0)
    assert order.tolist() == [1, 3, 0, 4, 2]
    assert groups.tolist() == [[2, 1, 0], [4, 2, 0], [5, 3, 0]]  # (end, rows read, padded)
    assert np.array_equal(order[slots], np.arange(5))
    order, groups, slots = train_data.group_texts(rows, chunks=2)
    assert order.tolist() == [1, 3, 0, 4, 2] and groups.tolist() == [[3, 2, 1], [5, 3, 1]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 7), min_size=1, max_size=60), st.integers(0, 9))
def test_text_groups_cover_every_text_once_and_read_all_its_rows(heights: list[int], chunks: int) -> None:
    rows = np.array(heights)
    order, groups, slots = train_data.group_texts(rows, chunks)
    assert sorted(order.tolist()) == list(range(len(rows)))
    assert np.array_equal(order[slots], np.arange(len(rows)))  # slots put the texts back in place
    start = 0
    for end, read, padded in groups.tolist():
        members = rows[order[start:end]]
        assert end > start and members.max() == read  # each text's rows all read, the tallest unpadded
        assert padded == (members.min() < read)
        if chunks == 0:
            assert not padded  # one height per group: nothing read that inference would not read
        start = end
    assert start == len(rows)
    if chunks:
        sizes = np.diff(np.concatenate([[0], groups[:, 0]]))
        assert len(sizes) == min(chunks, len(rows)) and sizes.max() - sizes.min() <= 1


def spec(
    batch_size: int = 8,
    text_pairs: float = 0.0,
    seed: int = 0,
    window: int | None = None,
    captions_per_image: int = 1,
    text_pair_partner: str = "other_language",
    single_keywords: float = 0.0,
    text_chunks: int = 0,
    decode_images: bool = True,
) -> train_data.BatchSpec:
    return train_data.BatchSpec(
        batch_size,
        text_pairs,
        seed,
        64,
        PREPROCESSING,
        window,
        captions_per_image,
        text_pair_partner,
        single_keywords,
        text_chunks,
        decode_images,
    )


def rendered(index: train_data.PairIndex, single_keywords: float = 0.0, trim: bool = True):
    """The index's shown texts, their numbers and their cached pixels."""
    texts = train_data.shown_texts(index, single_keywords)
    return texts, {t: i for i, t in enumerate(texts)}, TextCache(RENDERER, trim).get(texts)


def pair_batches(
    index: train_data.PairIndex, images, batch_spec: train_data.BatchSpec, trim: bool = True
) -> train_data.PairBatches:
    _, ids, pixels = rendered(index, batch_spec.single_keywords, trim)
    return train_data.PairBatches(index, images, batch_spec, ids, pixels.count)


def texts_in_order(batch: dict, texts: list[str]) -> list[str]:
    """A batch's texts, left then right, out of their groups."""
    return [texts[i] for i in np.asarray(batch["text_ids"])[batch["text_slots"]]]


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
    batches = pair_batches(index, train_data.image_source(index, True, 100, 2), spec())
    again = pair_batches(index, train_data.image_source(index, False, 100, 2), spec())
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
    batches = pair_batches(
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
        pair_batches(
            index, train_data.image_source(index, False, 100, 2), spec(window=2, captions_per_image=2)
        )


def test_texts_are_trimmed_to_the_rows_they_fill(shards: Path) -> None:
    index = train_data.read_index([shards])
    renderer = rendering.renderer_from_config(RENDERER)
    for trim, expected in (
        (True, lambda t: max(1, renderer.render_with_report(t).report.rows_used)),
        (False, lambda t: 4),
    ):
        texts, _, pixels = rendered(index, trim=trim)
        batches = pair_batches(index, train_data.image_source(index, True, 100, 2), spec(), trim=trim)
        batch = batches[0]
        shown = [index.texts[r] for r in batches.rows(0)]
        assert texts_in_order(batch, texts)[len(batch["left_text_keys"]) :] == shown
        ids = np.asarray(batch["text_ids"])[batch["text_slots"]][len(batch["left_text_keys"]) :]
        assert pixels.count[ids].tolist() == [expected(t) for t in shown]
    # "schwarz" fills one row of a 64 px canvas; the trimmed canvas is what the renderer drew on top.
    (image, rows), (tall, _) = renderer.render_for_model(["schwarz", "schwarz " * 12], trim=True)
    assert rows == 1 and tall.shape[0] > 16
    assert image.shape == (16, 64, 3) and image.min() < 128
    assert np.array_equal(image, renderer.render("schwarz")[:16])


DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
    ),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("resident", [True, False])
@pytest.mark.parametrize("chunks", [0, 3])
def test_batches_gathered_on_the_device_hold_the_rendered_texts_and_decoded_images(
    shards: Path, device: str, resident: bool, chunks: int
) -> None:
    index = train_data.read_index([shards])
    images = train_data.image_source(index, True, 100, 2)
    texts, ids, cached = rendered(index, single_keywords=0.5)
    batch_spec = spec(text_pairs=0.25, text_chunks=chunks, decode_images=False, single_keywords=0.5)
    batches = train_data.PairBatches(index, None, batch_spec, ids, cached.count)
    names = [images.name(k) for k in range(len(index.keys))]
    decoded = decode_pictures(images.images, names, 64, PREPROCESSING)
    pixels = TrainingPixels(cached, decoded, torch.device(device), (-1, 1), resident)
    assert pixels.rows.device.type == (device if resident else "cpu")
    renderer = rendering.renderer_from_config(RENDERER)
    for g in (0, 1, 2):
        batch = batches[g]
        assert "images" not in batch  # the trainer holds them
        got = pixels.pictures(torch.as_tensor(batch["image_keys"])).cpu()
        for picture, key in zip(got, batch["image_keys"].tolist(), strict=True):
            expected = to_value_range(prepare_image(png(COLOURS[index.keys[key]][0]), 64, PREPROCESSING))
            # Equal pixels; a GPU's float arithmetic may round the value mapping one ulp apart.
            assert torch.allclose(picture, torch.from_numpy(expected).permute(2, 0, 1), atol=1e-6, rtol=0)
        start, order = 0, torch.as_tensor(batch["text_ids"])
        for end, rows, padded in batch["text_groups"].tolist():
            group = pixels.texts(order[start:end], rows).cpu()
            assert group.shape == (end - start, 3, 16 * rows, 64)
            for x, text_id in zip(group, order[start:end].tolist(), strict=True):
                image, own = renderer.render_for_model([texts[text_id]], trim=True)[0]
                drawn = torch.from_numpy(to_value_range(image)).permute(2, 0, 1)
                assert torch.allclose(x[:, : 16 * own], drawn, atol=1e-6, rtol=0)
                assert (x[:, 16 * own :] == 1).all()  # padding is blank (white) and masked when read
            assert bool(padded) == (pixels.count[order[start:end]].min() < rows)
            start = end


def test_text_pairs_join_two_languages_of_one_image(shards: Path) -> None:
    index = train_data.read_index([shards])
    texts, _, _ = rendered(index)
    batches = pair_batches(index, train_data.image_source(index, True, 100, 2), spec(text_pairs=0.25))
    batch = batches[3]
    rows = batches.rows(3)
    assert len(batch["left_text_keys"]) == 2 and len(texts_in_order(batch, texts)) == 2 + 8
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
    same = pair_batches(index, source, spec(batch_size=2, text_pair_partner="same_language"))
    other = pair_batches(index, source, spec(batch_size=2))
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
    as_is = pair_batches(index, source, spec(batch_size=2)).texts(rows, 0)
    assert as_is == index.texts
    always = pair_batches(index, source, spec(batch_size=2, single_keywords=1.0))
    shown = [always.texts(rows, batch) for batch in range(20)]
    for texts in shown:
        for text, original in zip(texts, index.texts, strict=True):
            assert text == original if ", " not in original else text in original.split(", ")
    # Both words of each list turn up, and a batch shows the same words every time it is rebuilt.
    lists = [i for i, t in enumerate(index.texts) if ", " in t]
    assert all({texts[i] for texts in shown} == set(index.texts[i].split(", ")) for i in lists)
    assert shown[3] == always.texts(rows, 3)
    half = pair_batches(index, source, spec(batch_size=2, single_keywords=0.5))
    cut = sum(half.texts(rows, batch)[i] != index.texts[i] for batch in range(200) for i in lists)
    assert 150 < cut < 250  # of 400 draws
