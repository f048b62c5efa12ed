"""Retrieval metrics on hand-computed cases, and against a direct argsort transcription of the protocol.

With one-hot image embeddings (the identity matrix), text_emb[j][i] IS the similarity of caption j
to image i, so each case below writes its similarity table directly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.metrics import mean_over_languages, retrieval_metrics, word_retrieval_metrics
from ground.errors import InputError
from pixglot.cli import main


def _case(similarities: list[list[float]], text_image: list[int], **kwargs) -> dict:
    """similarities[caption][image]."""
    sims = np.array(similarities, dtype=np.float32)
    return retrieval_metrics(np.eye(sims.shape[1], dtype=np.float32), sims, text_image, **kwargs)


def test_perfect_ranking_scores_one_everywhere():
    m = _case([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 1, 2])
    assert m["image_to_text"] == {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0}
    assert m["text_to_image"] == {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0}
    assert (m["protocol"], m["tie_rule"], m["n_images"], m["n_texts"]) == ("all", "pessimistic", 3, 3)


def test_reversed_ranking_puts_every_match_last():
    # Caption j scores (i - j) mod 4 with image i: its own image scores 0, the lowest.
    sims = [[(i - j) % 4 for i in range(4)] for j in range(4)]
    m = _case(sims, [0, 1, 2, 3], ks=(1, 3, 4))
    for direction in ("image_to_text", "text_to_image"):
        assert m[direction] == {"recall@1": 0.0, "recall@3": 0.0, "recall@4": 1.0}


def test_ties_count_against_and_optimistic_bound_is_reported():
    # Caption 0 ties between images 0 and 1; caption 1 is clear.
    m = _case([[0.5, 0.5, 0.1], [0.0, 0.9, 0.2]], [0, 1], ks=(1, 2))
    assert m["text_to_image"] == {"recall@1": 0.5, "recall@2": 1.0}
    assert m["optimistic"]["text_to_image"] == {"recall@1": 1.0, "recall@2": 1.0}
    # Image 1 ranks caption 1 (0.9) first; image 0 ranks caption 0 (0.5) above caption 1 (0.0).
    # Image 2 has no caption: a miss over 3 images.
    assert m["image_to_text"]["recall@1"] == pytest.approx(2 / 3)
    assert m["images_without_text"] == 1


def test_identical_captions_of_different_images_tie():
    # The same text under two images gives the same vector, so each image scores both captions alike.
    m = _case([[0.8, 0.1], [0.8, 0.1]], [0, 1], ks=(1,))
    assert m["image_to_text"]["recall@1"] == 0.0
    assert m["optimistic"]["image_to_text"]["recall@1"] == 1.0
    assert m["text_to_image"]["recall@1"] == 0.5  # both captions find image 0 first


def test_a_duplicated_caption_counts_once_per_copy_at_k_above_one():
    # Captions 0 and 1 are the same vector (the same text under images 0 and 1).
    # Image 0 ranks caption 0 and its copy equal first: pessimistic rank 1. Image 1 scores both
    # copies 0 like its own caption 1, and caption 2 higher: rank 2. Image 2 ranks caption 2 first.
    m = _case([[1, 0, 0.6], [1, 0, 0.6], [0, 1, 0.8]], [0, 1, 2], ks=(1, 2, 3))
    assert m["image_to_text"] == pytest.approx({"recall@1": 1 / 3, "recall@2": 2 / 3, "recall@3": 1.0})
    assert m["optimistic"]["image_to_text"] == pytest.approx(
        {"recall@1": 2 / 3, "recall@2": 1.0, "recall@3": 1.0}
    )
    # Caption 0 finds image 0 first; caption 1 (image 1, score 0) has images 0 and 2 above it;
    # caption 2 has image 1 (1.0) above its own (0.8).
    assert m["text_to_image"] == pytest.approx({"recall@1": 1 / 3, "recall@2": 2 / 3, "recall@3": 1.0})
    assert m["optimistic"]["text_to_image"] == m["text_to_image"]


def test_several_captions_per_image():
    # Images 0, 1; captions 0, 1 belong to image 0, captions 2, 3 to image 1.
    sims = [
        [0.2, 0.9],  # caption 0 prefers image 1: text->image miss at 1
        [0.7, 0.1],  # caption 1 finds image 0
        [0.3, 0.4],  # caption 2 finds image 1
        [0.6, 0.5],  # caption 3 prefers image 0: miss at 1
    ]
    m = _case(sims, [0, 0, 1, 1], ks=(1, 2, 3))
    assert m["text_to_image"] == {"recall@1": 0.5, "recall@2": 1.0, "recall@3": 1.0}
    # Image 0 ranks captions 1 (0.7), 3 (0.6), 2 (0.3), 0 (0.2): its caption 1 is first.
    # Image 1 ranks captions 0 (0.9), 3 (0.5), 2 (0.4), 1 (0.1): its best, caption 3, is second.
    assert m["image_to_text"] == {"recall@1": 0.5, "recall@2": 1.0, "recall@3": 1.0}


def test_protocol_first_keeps_the_first_caption_of_each_image():
    sims = [
        [0.2, 0.9],  # image 0's first caption: a miss
        [0.7, 0.1],  # image 0's second caption: a hit
        [0.3, 0.4],  # image 1's first caption: a hit
        [0.6, 0.5],
    ]
    first = _case(sims, [0, 0, 1, 1], ks=(1,), protocol="first")
    assert first["n_texts"] == 2 and first["protocol"] == "first"
    assert first["text_to_image"]["recall@1"] == 0.5
    # Image 0 sees captions 0 (own, 0.2) and 2 (0.3); image 1 sees 0 (0.9) and 2 (own, 0.4): both miss,
    # where with all captions image 0 finds its caption 1 first.
    assert first["image_to_text"]["recall@1"] == 0.0
    assert _case(sims, [0, 0, 1, 1], ks=(1,))["image_to_text"]["recall@1"] == 0.5
    # "First" is by position in the list, not by image order.
    shuffled = _case([sims[2], sims[0], sims[1], sims[3]], [1, 0, 0, 1], ks=(1,), protocol="first")
    assert shuffled["text_to_image"] == first["text_to_image"]


def test_a_language_with_fewer_images_uses_its_own_denominators():
    en = _case([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 1, 2], ks=(1,))
    mi = retrieval_metrics(
        np.eye(2, dtype=np.float32), np.array([[0.1, 0.9], [0.8, 0.2]], np.float32), [0, 1], ks=(1,)
    )
    assert mi["n_images"] == 2 and mi["text_to_image"]["recall@1"] == 0.0
    mean = mean_over_languages({"en": en, "mi": mi})
    assert mean["text_to_image"]["recall@1"] == 0.5  # each language counts once, whatever its size


def _argsort_reference(image_emb, text_emb, text_image, ks):
    """The protocol as a direct transcription: rank everything by descending similarity."""
    sims = image_emb @ text_emb.T
    text_image = np.asarray(text_image)
    by_text = np.argsort(-sims, axis=0)
    t2i = {k: float(np.mean((by_text[:k] == text_image[None]).any(axis=0))) for k in ks}
    by_image = np.argsort(-sims, axis=1)
    own = text_image[by_image] == np.arange(len(sims))[:, None]
    i2t = {k: float(np.mean(own[:, :k].any(axis=1))) for k in ks}
    return i2t, t2i


@pytest.mark.parametrize("seed", range(5))
def test_matches_argsort_reference_and_chunking_changes_nothing(seed):
    rng = np.random.default_rng(seed)
    n_images, dim = 40, 8
    text_image = rng.integers(0, n_images, size=90)
    image_emb = rng.normal(size=(n_images, dim)).astype(np.float32)
    text_emb = (image_emb[text_image] + rng.normal(scale=1.5, size=(90, dim))).astype(np.float32)
    ks = (1, 5, 10)
    whole = retrieval_metrics(image_emb, text_emb, text_image, ks=ks)
    chunked = retrieval_metrics(image_emb, text_emb, text_image, ks=ks, max_cells=7)
    assert whole == chunked
    i2t, t2i = _argsort_reference(image_emb, text_emb, text_image, ks)
    assert whole["image_to_text"] == {f"recall@{k}": i2t[k] for k in ks}
    assert whole["text_to_image"] == {f"recall@{k}": t2i[k] for k in ks}


def _tie_reference(image_emb, text_emb, text_image, ks, strict):
    """Ranks counted one by one: the others scoring at least the match (strict: more than it)."""
    sims = image_emb @ text_emb.T
    above = np.greater if strict else np.greater_equal
    own = np.asarray(text_image)
    t2i = [
        sum(above(sims[i, j], sims[own[j], j]) for i in range(len(sims)) if i != own[j])
        for j in range(len(own))
    ]
    i2t = []
    for i in range(len(sims)):
        mine = own == i
        if not mine.any():
            i2t.append(len(own))  # an image without captions misses at every k
            continue
        best = sims[i, mine].max()
        i2t.append(sum(above(sims[i, j], best) for j in np.flatnonzero(~mine)))
    recall = lambda ranks: {f"recall@{k}": float(np.mean(np.array(ranks) < k)) for k in ks}  # noqa: E731
    return recall(i2t), recall(t2i)


@pytest.mark.parametrize("seed", range(3))
def test_duplicated_images_and_captions_match_a_one_by_one_count(seed):
    rng = np.random.default_rng(seed)
    images = np.round(rng.normal(size=(12, 3))).astype(np.float32)
    images = images[rng.integers(0, 12, size=20)]  # images repeated: vectors that tie exactly
    text_image = rng.integers(0, 20, size=30)
    captions = np.round(rng.normal(size=(10, 3))).astype(np.float32)[rng.integers(0, 10, size=30)]
    ks = (1, 2, 3, 5)
    m = retrieval_metrics(images, captions, text_image, ks=ks, max_cells=9)
    i2t, t2i = _tie_reference(images, captions, text_image, ks, strict=False)
    assert (m["image_to_text"], m["text_to_image"]) == (i2t, t2i)
    i2t, t2i = _tie_reference(images, captions, text_image, ks, strict=True)
    assert (m["optimistic"]["image_to_text"], m["optimistic"]["text_to_image"]) == (i2t, t2i)


def test_with_many_ties_the_argsort_result_lies_between_the_bounds():
    rng = np.random.default_rng(7)
    text_image = rng.integers(0, 25, size=60)
    image_emb = np.round(rng.normal(size=(25, 3))).astype(np.float32)
    text_emb = np.round(rng.normal(size=(60, 3))).astype(np.float32)
    m = retrieval_metrics(image_emb, text_emb, text_image)
    i2t, t2i = _argsort_reference(image_emb, text_emb, text_image, (1, 5, 10))
    for direction, ref in (("image_to_text", i2t), ("text_to_image", t2i)):
        for k in (1, 5, 10):
            assert m[direction][f"recall@{k}"] <= ref[k] <= m["optimistic"][direction][f"recall@{k}"]
    assert m["image_to_text"] != m["optimistic"]["image_to_text"]  # the ties really matter here


@pytest.mark.parametrize(
    ("image_emb", "text_emb", "text_image", "message"),
    [
        (np.eye(2), np.eye(3), [0, 1], "dimension"),
        (np.eye(2), np.eye(2), [0, 2], "text_image values"),
        (np.eye(2), np.eye(2), [0], "one entry per text"),
        (np.eye(2), np.array([[np.nan, 0], [0, 1]]), [0, 1], "NaN"),
        (np.zeros((0, 2)), np.eye(2), [0, 1], "non-empty"),
        # The message names the array at fault and the sizes it was checked against.
        (np.array([[np.inf, 0], [0, 1]]), np.eye(2), [0, 1], "image_emb contains NaN or infinite"),
        (np.eye(2), np.zeros((0, 2)), [], "text_emb must be a non-empty"),
        (np.eye(2, dtype=np.int64), np.eye(2), [0, 1], "image_emb must hold floats"),
        (np.eye(2), np.eye(2), [0.0, 1.0], "text_image must hold integer image indices"),
        (np.eye(2), np.ones((3, 2)), [0], r"one entry per text \(3\)"),
        (np.ones((2, 3)), np.ones((2, 3)), [0, 2], r"text_image values must lie in \[0, 2\)"),
    ],
)
def test_bad_arrays_are_rejected_with_a_clear_message(image_emb, text_emb, text_image, message):
    with pytest.raises(InputError, match=message):
        retrieval_metrics(image_emb, text_emb, text_image)


@pytest.mark.parametrize("ks", [(0,), (5, 0), ()])
def test_k_below_one_or_no_k_is_rejected(ks):
    with pytest.raises(InputError, match="ks must be positive integers"):
        retrieval_metrics(np.eye(2), np.eye(2), [0, 1], ks=ks)


def test_an_unknown_protocol_is_rejected_and_the_known_ones_named():
    with pytest.raises(InputError, match="unknown caption protocol 'best'; expected one of all, first"):
        retrieval_metrics(np.eye(2), np.eye(2), [0, 1], protocol="best")


def test_float64_embeddings_are_scored_in_float32():
    # 1 + 1e-9 is 1.0 in float32, so caption 0 scores its image 0 and image 1 alike: a tie, which
    # is a miss at k = 1 (pessimistic) and a hit (optimistic). In float64, image 1 would win outright.
    text_emb = np.array([[1.0, 1.0 + 1e-9], [0.0, 1.0]])
    m = retrieval_metrics(np.eye(2), text_emb, [0, 1], ks=(1,))
    assert m["text_to_image"] == {"recall@1": 0.5}
    assert m["optimistic"]["text_to_image"] == {"recall@1": 1.0}


def test_the_mean_over_languages_averages_the_bounds_too():
    # Language a: caption 0 ties between images 0 and 1 (0.5 each), caption 1 finds image 1;
    # each image finds its own caption first. Language b: every caption prefers the other image.
    a = _case([[0.5, 0.5], [0.0, 1.0]], [0, 1], ks=(1,))
    b = _case([[0.0, 1.0], [1.0, 0.0]], [0, 1], ks=(1,))
    assert mean_over_languages({"a": a, "b": b}) == {
        "text_to_image": {"recall@1": 0.25},
        "image_to_text": {"recall@1": 0.5},
        "optimistic": {"text_to_image": {"recall@1": 0.5}, "image_to_text": {"recall@1": 0.5}},
    }
    only = mean_over_languages({"a": a})  # one language: its own figures
    assert only["text_to_image"] == {"recall@1": 0.5}
    assert only["optimistic"]["text_to_image"] == {"recall@1": 1.0}
    assert mean_over_languages({}) == {}


def test_cli_embeddings_prints_the_metrics_as_json(tmp_path, capsys):
    path = tmp_path / "emb.npz"
    sims = np.array([[0.2, 0.9], [0.7, 0.1], [0.3, 0.4], [0.6, 0.5]], np.float32)
    np.savez(path, image_emb=np.eye(2, dtype=np.float32), text_emb=sims, text_image=np.array([0, 0, 1, 1]))
    assert main(["eval", "embeddings", str(path), "--protocol", "first"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(_case(sims.tolist(), [0, 0, 1, 1], protocol="first")))
    assert printed["protocol"] == "first" and printed["text_to_image"]["recall@1"] == 0.5


def test_cli_embeddings_names_a_missing_array(tmp_path, capsys):
    path = tmp_path / "bad.npz"
    np.savez(path, image_emb=np.eye(2))
    assert main(["eval", "embeddings", str(path)]) == 2
    assert "text_emb" in capsys.readouterr().err


# ---------------------------------------------------------------- protocol "words"


def _words(similarities: list[list[float]], pairs: list[tuple[int, int]], **kwargs) -> dict:
    """similarities[word][image]; pairs: (word, image) that are relevant to each other."""
    sims = np.array(similarities, dtype=np.float32)
    words, images = zip(*pairs, strict=True)
    return word_retrieval_metrics(np.eye(sims.shape[1], dtype=np.float32), sims, words, images, **kwargs)


def test_a_word_is_found_by_any_of_its_images_and_its_other_images_are_no_competitors():
    # Word 0 ("cat") belongs to images 0 and 1, word 1 ("flag") to image 2; image 3 has no word.
    m = _words([[0.9, 0.8, 0.7, 0.1], [0.5, 0.6, 0.4, 0.0]], [(0, 0), (0, 1), (1, 2)], ks=(1, 2, 3))
    # "cat": its best image ranks first. "flag": images 0 and 1 (not its own) score above image 2.
    assert m["text_to_image"] == {"recall@1": 0.5, "recall@2": 0.5, "recall@3": 1.0}
    # Image 0 and 1 find "cat" first; image 2 ranks "cat" (0.7) above "flag" (0.4); image 3 has none.
    assert m["image_to_text"] == {"recall@1": 0.5, "recall@2": 0.75, "recall@3": 0.75}
    assert (m["protocol"], m["n_texts"], m["images_without_text"]) == ("words", 2, 1)
    # Chance: "cat" hits the top 1 of 4 with p 2/4, "flag" with 1/4; an image of one word in 2: 1/2.
    assert m["chance"]["text_to_image"]["recall@1"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert m["chance"]["image_to_text"]["recall@1"] == pytest.approx(3 * (1 / 2) / 4)
    assert (
        _words([[0.9, 0.8, 0.7, 0.1], [0.5, 0.6, 0.4, 0.0]], [(0, 0), (1, 2), (0, 1), (0, 0)], ks=(1, 2, 3))
        == m
    )
    assert m["chance"]["text_to_image"]["recall@3"] == pytest.approx((1 + (1 - 3 / 4 * 2 / 3 * 1 / 2)) / 2)


def test_words_ties_count_against_and_the_optimistic_bound_is_reported():
    m = _words([[0.5, 0.5, 0.1]], [(0, 0)], ks=(1,))
    assert m["text_to_image"]["recall@1"] == 0.0
    assert m["optimistic"]["text_to_image"]["recall@1"] == 1.0


def _words_reference(image_emb, text_emb, relevant, ks):
    """The protocol transcribed directly: rank by descending similarity, a hit when a relevant item
    is among the first k (ties broken by index: no ties in random data)."""
    sims = text_emb @ image_emb.T
    by_text = np.argsort(-sims, axis=1)
    t2i = {k: float(np.mean(np.take_along_axis(relevant, by_text[:, :k], 1).any(1))) for k in ks}
    by_image = np.argsort(-sims.T, axis=1)
    i2t = {k: float(np.mean(np.take_along_axis(relevant.T, by_image[:, :k], 1).any(1))) for k in ks}
    return t2i, i2t


@pytest.mark.parametrize("seed", range(4))
def test_words_match_the_argsort_reference_and_chunking_changes_nothing(seed):
    rng = np.random.default_rng(seed)
    n_words, n_images, dim = 50, 30, 6
    relevant = rng.random((n_words, n_images)) < 0.08
    relevant[:, 0] = False  # one image has no word
    relevant[np.arange(n_words), rng.integers(1, n_images, n_words)] = True  # every word has an image
    image_emb = rng.normal(size=(n_images, dim)).astype(np.float32)
    text_emb = (relevant @ image_emb + rng.normal(scale=2.0, size=(n_words, dim))).astype(np.float32)
    words, images = np.nonzero(relevant)
    ks = (1, 5, 10)
    whole = word_retrieval_metrics(image_emb, text_emb, words, images, ks=ks)
    assert word_retrieval_metrics(image_emb, text_emb, words, images, ks=ks, max_cells=7) == whole
    t2i, i2t = _words_reference(image_emb, text_emb, relevant, ks)
    assert whole["text_to_image"] == {f"recall@{k}": t2i[k] for k in ks}
    assert whole["image_to_text"] == {f"recall@{k}": i2t[k] for k in ks}
    assert whole["images_without_text"] == int(np.sum(~relevant.any(0))) >= 1
    # Chance, by simulation: random rankings hit as often as the formula says.
    shuffled = np.argsort(rng.random((4000, n_images)), axis=1)[:, :5]
    simulated = np.mean([relevant[w % n_words][shuffled[w]].any() for w in range(4000)])
    assert whole["chance"]["text_to_image"]["recall@5"] == pytest.approx(simulated, abs=0.03)


@pytest.mark.parametrize(
    ("words", "images", "message"),
    [
        ([0], [0, 1], "one length"),
        ([0, 1], [0, 5], r"pair_image must hold integer indices in \[0, 2\)"),
        ([0, 0], [0, 1], "query 1 has no relevant image"),
        ([0, 1], [0, 2], r"pair_image must hold integer indices in \[0, 2\)"),  # one past the end
        ([0], [2], r"pair_image must hold integer indices in \[0, 2\)"),  # a single pair is checked too
        ([0, 5], [0, 1], r"pair_text must hold integer indices in \[0, 2\)"),
    ],
)
def test_bad_word_pairs_are_rejected_with_a_clear_message(words, images, message):
    with pytest.raises(InputError, match=message):
        word_retrieval_metrics(np.eye(2), np.eye(2), words, images)


def test_words_without_ties_have_equal_bounds_and_an_image_without_words_always_misses():
    # The case above: no two scores tie in any word's row or any image's column, so the optimistic
    # figures equal the pessimistic ones; image 3, which has no word, misses at every k.
    m = _words([[0.9, 0.8, 0.7, 0.1], [0.5, 0.6, 0.4, 0.0]], [(0, 0), (0, 1), (1, 2)], ks=(1, 2, 3))
    assert m["optimistic"] == {
        "text_to_image": {"recall@1": 0.5, "recall@2": 0.5, "recall@3": 1.0},
        "image_to_text": {"recall@1": 0.5, "recall@2": 0.75, "recall@3": 0.75},
    }
    assert (m["tie_rule"], m["n_images"]) == ("pessimistic", 4)


def test_the_mean_over_languages_averages_chance_when_every_language_has_it():
    # As above: chance at k = 1 is (2/4 + 1/4) / 2 over words and (1/2 + 1/2 + 1/2 + 0) / 4 over images.
    four = _words([[0.9, 0.8, 0.7, 0.1], [0.5, 0.6, 0.4, 0.0]], [(0, 0), (0, 1), (1, 2)], ks=(1,))
    # One word of image 0 among two images: 1/2 over words; image 0 has the only word: (1 + 0) / 2.
    two = _words([[0.9, 0.1]], [(0, 0)], ks=(1,))
    mean = mean_over_languages({"four": four, "two": two})
    assert mean["chance"] == {"text_to_image": {"recall@1": 0.4375}, "image_to_text": {"recall@1": 0.4375}}
    captions = _case([[1.0, 0.0], [0.0, 1.0]], [0, 1], ks=(1,))
    assert "chance" not in mean_over_languages({"four": four, "captions": captions})
