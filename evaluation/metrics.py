"""Image<->text retrieval Recall@k, computed the way big_vision's image_text_retrieval evaluator does.

Protocol "all" (big_vision): similarity = image_emb @ text_emb.T in float32.
- text->image: for each caption, all images are ranked; a hit at k when the caption's own image is
  among the first k. Denominator: captions.
- image->text: for each image, all captions are ranked; a hit at k when at least one of the image's
  own captions is among the first k. Denominator: images (an image without captions is a miss).
Protocol "first" (CLIP_benchmark's XM3600 setup): only the first caption of each image is kept (the
first in `text_image` order), then the same computation.
Protocol "words" (Pixglot's one-word search, `word_retrieval_metrics`): the queries are words, each
relevant to every image that has it; text->image is a hit at k when any image of the word is among
the first k, image->text when any word of the image is. Its expected value under a random ranking
("chance") is returned too: it differs from word to word (a word of 100 images is easy to hit).

Tie rule (pessimistic, deterministic): a competitor whose score equals the correct item's score
ranks before it. big_vision breaks ties by numpy's unstable argsort, i.e. in an arbitrary but
valid order, so its result lies between ours and the optimistic one (ties ranked after the correct
item), which is returned too ("optimistic"), so the spread that ties cause is visible. Identical
embedding vectors (e.g. the same caption text under two images) tie exactly: duplicates are
merged before scoring so floating-point noise cannot separate them.

The similarity matrix is computed in row chunks, so memory stays bounded (about `max_cells` float32
values at a time) whatever the number of images and captions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from data.captions import CAPTION_PROTOCOLS, check_caption_protocol
from ground.errors import InputError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

PROTOCOLS = (*CAPTION_PROTOCOLS, "words")
PROTOCOL_DESCRIPTIONS = {
    "all": "all (big_vision image_text_retrieval): every caption counts; image→text is a hit when any "
    "caption of the image is in the top k (over images); text→image ranks all images for each caption "
    "(over captions)",
    "first": "first (CLIP_benchmark): only the first caption of each image; otherwise as 'all'",
    "words": 'words (one-word search): each word of the captions that are word lists ("a, b, c") is a '
    "query; text→image is a hit when any image that has the word is in the top k (over words); "
    "image→text when any word of the image is (over images)",
}
TIE_RULE = "pessimistic"
TIE_RULE_DESCRIPTION = (
    "pessimistic: a competitor scoring exactly the same as the correct item ranks before it; the "
    "optimistic figures (ties ranked after) bound the result from above, and big_vision's arbitrary tie "
    "order lies between"
)
DIRECTIONS = ("image_to_text", "text_to_image")
DEFAULT_KS = (1, 5, 10)
_MAX_CELLS = 1 << 22  # 4M similarities per chunk: 16 MiB of float32, ~50 MiB with the masks


def _as_embeddings(name: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[0] == 0:
        raise InputError(f"{name} must be a non-empty 2-D array (N x dim), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{name} must hold floats, got {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return array


def _embeddings(image_emb: ArrayLike, text_emb: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    image_emb = _as_embeddings("image_emb", image_emb)
    text_emb = _as_embeddings("text_emb", text_emb)
    if image_emb.shape[1] != text_emb.shape[1]:
        raise InputError(f"image_emb has dimension {image_emb.shape[1]} but text_emb {text_emb.shape[1]}")
    return image_emb, text_emb


def _ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise InputError(f"ks must be positive integers, got {ks}")
    return ks


def _validate(
    image_emb: ArrayLike, text_emb: ArrayLike, text_image: ArrayLike, ks: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    image_emb, text_emb = _embeddings(image_emb, text_emb)
    text_image = np.asarray(text_image)
    if text_image.shape != (text_emb.shape[0],):
        raise InputError(
            f"text_image must have one entry per text ({text_emb.shape[0]}), got shape {text_image.shape}"
        )
    if not np.issubdtype(text_image.dtype, np.integer):
        raise InputError(f"text_image must hold integer image indices, got {text_image.dtype}")
    if text_image.min() < 0 or text_image.max() >= image_emb.shape[0]:
        raise InputError(
            f"text_image values must lie in [0, {image_emb.shape[0]}), "
            f"got {text_image.min()}..{text_image.max()}"
        )
    return image_emb, text_emb, text_image.astype(np.int64), _ks(ks)


@dataclass
class _Columns:
    """The distinct vectors of one side, so that identical vectors tie exactly."""

    vectors: np.ndarray  # unique rows
    of_row: np.ndarray  # the unique row of each input row
    repeated: np.ndarray  # unique rows that stand for several input rows
    extra: np.ndarray  # how many more input rows each of those stands for


def _columns(rows: np.ndarray) -> _Columns:
    unique, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    repeated = np.flatnonzero(counts > 1)
    return _Columns(unique, inverse.reshape(-1), repeated, (counts[repeated] - 1).astype(np.int64))


def _count(scores: np.ndarray, threshold: np.ndarray, columns: _Columns, strict: bool) -> np.ndarray:
    """Per row: how many input vectors score >= (or > when strict) the row's threshold."""
    compare = np.greater if strict else np.greater_equal
    n = np.count_nonzero(compare(scores, threshold[:, None]), axis=1).astype(np.int64)
    if columns.repeated.size:
        n += compare(scores[:, columns.repeated], threshold[:, None]).astype(np.int64) @ columns.extra
    return n


def _chunks(n_rows: int, n_cols: int, max_cells: int) -> Iterator[slice]:
    step = max(1, max_cells // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def text_to_image_ranks(
    image_emb: np.ndarray, text_emb: np.ndarray, text_image: np.ndarray, max_cells: int = _MAX_CELLS
) -> tuple[np.ndarray, np.ndarray]:
    """0-based rank of each caption's own image: (pessimistic, optimistic)."""
    images = _columns(image_emb)
    own = images.of_row[text_image]
    pessimistic = np.empty(len(text_emb), dtype=np.int64)
    optimistic = np.empty(len(text_emb), dtype=np.int64)
    for rows in _chunks(len(text_emb), len(images.vectors), max_cells):
        scores = text_emb[rows] @ images.vectors.T
        target = scores[np.arange(scores.shape[0]), own[rows]]
        # The caption's own image is among the ">=" ones, so one is subtracted.
        pessimistic[rows] = _count(scores, target, images, strict=False) - 1
        optimistic[rows] = _count(scores, target, images, strict=True)
    return pessimistic, optimistic


def image_to_text_ranks(
    image_emb: np.ndarray, text_emb: np.ndarray, text_image: np.ndarray, max_cells: int = _MAX_CELLS
) -> tuple[np.ndarray, np.ndarray]:
    """0-based rank of each image's best own caption: (pessimistic, optimistic); -1 if it has no caption."""
    texts = _columns(text_emb)
    order = np.argsort(text_image, kind="stable")
    owners, owned = text_image[order], texts.of_row[order]
    pessimistic = np.full(len(image_emb), -1, dtype=np.int64)
    optimistic = np.full(len(image_emb), -1, dtype=np.int64)
    for rows in _chunks(len(image_emb), len(texts.vectors), max_cells):
        lo, hi = np.searchsorted(owners, [rows.start, rows.stop])
        if lo == hi:
            continue
        local = owners[lo:hi] - rows.start  # chunk row of each owned caption
        scores = image_emb[rows] @ texts.vectors.T
        own_scores = scores[local, owned[lo:hi]]
        best = np.full(scores.shape[0], -np.inf, dtype=np.float32)
        np.maximum.at(best, local, own_scores)
        has_text = np.isfinite(best)
        # Captions scoring >= the best own one, minus the image's own captions among them.
        own_at_least = np.bincount(local, weights=own_scores >= best[local], minlength=scores.shape[0])
        chunk_pessimistic = _count(scores, best, texts, strict=False) - np.rint(own_at_least).astype(np.int64)
        pessimistic[rows] = np.where(has_text, chunk_pessimistic, -1)
        optimistic[rows] = np.where(has_text, _count(scores, best, texts, strict=True), -1)
    return pessimistic, optimistic


def _recalls(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    hit = ranks >= 0
    return {f"recall@{k}": float(np.mean(hit & (ranks < k))) for k in ks}


def select_protocol(text_image: np.ndarray, protocol: str) -> np.ndarray:
    """Indices of the texts that the protocol scores: all, or the first of each image."""
    check_caption_protocol(protocol)
    if protocol == "all":
        return np.arange(len(text_image))
    _, first = np.unique(text_image, return_index=True)
    return np.sort(first)


def retrieval_metrics(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    text_image: Sequence[int] | np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    protocol: str = "all",
    max_cells: int = _MAX_CELLS,
) -> dict:
    """Recall@k both ways for images (N x d), texts (M x d) and the image index of each text (M).

    Returns {"protocol", "tie_rule", "n_images", "n_texts", "images_without_text",
    "image_to_text": {"recall@k": ...}, "text_to_image": {...}, "optimistic": {direction: {...}}}.
    """
    image_emb, text_emb, text_image, ks = _validate(image_emb, text_emb, text_image, ks)
    keep = select_protocol(text_image, protocol)
    text_emb, text_image = text_emb[keep], text_image[keep]
    i2t = image_to_text_ranks(image_emb, text_emb, text_image, max_cells)
    t2i = text_to_image_ranks(image_emb, text_emb, text_image, max_cells)
    return {
        "protocol": protocol,
        "tie_rule": TIE_RULE,
        "n_images": int(len(image_emb)),
        "n_texts": int(len(text_emb)),
        "images_without_text": int(np.sum(i2t[0] < 0)),
        "image_to_text": _recalls(i2t[0], ks),
        "text_to_image": _recalls(t2i[0], ks),
        "optimistic": {"image_to_text": _recalls(i2t[1], ks), "text_to_image": _recalls(t2i[1], ks)},
    }


def _relevance_rows(pair_row: np.ndarray, pair_col: np.ndarray, rows: slice, n_cols: int) -> np.ndarray:
    mask = np.zeros((rows.stop - rows.start, n_cols), dtype=bool)
    inside = (pair_row >= rows.start) & (pair_row < rows.stop)
    mask[pair_row[inside] - rows.start, pair_col[inside]] = True
    return mask


def _best_relevant_ranks(
    row_emb: np.ndarray, col_emb: np.ndarray, pair_row: np.ndarray, pair_col: np.ndarray, max_cells: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the 0-based rank, (pessimistic, optimistic), of its best relevant column among the
    columns not relevant to it; -1 for a row with no relevant column."""
    rows_u, cols_u = _columns(row_emb), _columns(col_emb)
    pessimistic = np.empty(len(row_emb), dtype=np.int64)
    optimistic = np.empty(len(row_emb), dtype=np.int64)
    for rows in _chunks(len(row_emb), len(col_emb), max_cells):
        # Through the distinct vectors, so that identical vectors score identically.
        scores = (rows_u.vectors[rows_u.of_row[rows]] @ cols_u.vectors.T)[:, cols_u.of_row]
        relevant = _relevance_rows(pair_row, pair_col, rows, len(col_emb))
        best = np.where(relevant, scores, -np.inf).max(axis=1)[:, None]
        has = relevant.any(axis=1)
        pessimistic[rows] = np.where(has, np.count_nonzero(~relevant & (scores >= best), axis=1), -1)
        optimistic[rows] = np.where(has, np.count_nonzero(~relevant & (scores > best), axis=1), -1)
    return pessimistic, optimistic


def word_ranks(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    pair_text: np.ndarray,
    pair_image: np.ndarray,
    max_cells: int = _MAX_CELLS,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """0-based ranks, (pessimistic, optimistic), of each query's best relevant image and of each
    image's best relevant query, counting only competitors that are not relevant; -1 for an image
    without a query. (pair_text[j], pair_image[j]) are the relevant pairs."""
    return {
        "text_to_image": _best_relevant_ranks(text_emb, image_emb, pair_text, pair_image, max_cells),
        "image_to_text": _best_relevant_ranks(image_emb, text_emb, pair_image, pair_text, max_cells),
    }


def _chance(n_relevant: np.ndarray, n_candidates: int, ks: Sequence[int]) -> dict[str, float]:
    """Mean probability that a uniformly random ranking puts one of n_relevant among the first k."""
    out = {}
    for k in ks:
        # 1 - C(n - r, k) / C(n, k) = 1 - prod_{i<k} (n - r - i) / (n - i)
        i = np.arange(min(k, n_candidates))
        miss = np.prod(np.clip(n_candidates - n_relevant[:, None] - i, 0, None) / (n_candidates - i), axis=1)
        out[f"recall@{k}"] = float(np.mean(1 - miss))
    return out


def word_retrieval_metrics(
    image_emb: np.ndarray,
    text_emb: np.ndarray,
    pair_text: Sequence[int] | np.ndarray,
    pair_image: Sequence[int] | np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    max_cells: int = _MAX_CELLS,
) -> dict:
    """Protocol "words": Recall@k both ways when a query may be relevant to many images and an image
    to many queries (the pairs), as `retrieval_metrics` returns it, plus "chance" (the expected
    Recall@k of a random ranking) for both directions."""
    image_emb, text_emb = _embeddings(image_emb, text_emb)
    ks = _ks(ks)
    pair_text, pair_image = np.asarray(pair_text), np.asarray(pair_image)
    if pair_text.ndim != 1 or pair_text.shape != pair_image.shape:
        raise InputError(
            f"pair_text and pair_image must be 1-D and of one length, got shapes {pair_text.shape} "
            f"and {pair_image.shape}"
        )
    sides = (("pair_text", pair_text, len(text_emb)), ("pair_image", pair_image, len(image_emb)))
    for name, pairs, n in sides:
        inside = pairs.size == 0 or (pairs.min() >= 0 and pairs.max() < n)
        if not (np.issubdtype(pairs.dtype, np.integer) and inside):
            raise InputError(f"{name} must hold integer indices in [0, {n})")
    # A pair given twice is one pair (the chance counts each relevant image once).
    pair_text, pair_image = np.unique(np.stack([pair_text, pair_image]).astype(np.int64), axis=1)
    n_relevant = np.bincount(pair_text, minlength=len(text_emb))
    if not n_relevant.all():
        raise InputError(f"query {int(np.argmin(n_relevant))} has no relevant image")
    ranks = word_ranks(image_emb, text_emb, pair_text, pair_image, max_cells)
    words_of_image = np.bincount(pair_image, minlength=len(image_emb))
    return {
        "protocol": "words",
        "tie_rule": TIE_RULE,
        "n_images": int(len(image_emb)),
        "n_texts": int(len(text_emb)),
        "images_without_text": int(np.sum(words_of_image == 0)),
        **{d: _recalls(ranks[d][0], ks) for d in DIRECTIONS},
        "optimistic": {d: _recalls(ranks[d][1], ks) for d in DIRECTIONS},
        "chance": {
            "text_to_image": _chance(n_relevant, len(image_emb), ks),
            "image_to_text": _chance(words_of_image, len(text_emb), ks),  # no word: never a hit
        },
    }


def mean_over_languages(per_language: dict[str, dict]) -> dict:
    """The unweighted mean of each Recall@k over languages (each language counts once)."""
    if not per_language:
        return {}
    results = list(per_language.values())
    mean: dict = {}
    for direction in DIRECTIONS:
        names = results[0][direction].keys()
        mean[direction] = {n: float(np.mean([r[direction][n] for r in results])) for n in names}
    for bound in ("optimistic", "chance"):
        if all(bound in r for r in results):
            mean[bound] = {
                d: {n: float(np.mean([r[bound][d][n] for r in results])) for n in mean[d]} for d in DIRECTIONS
            }
    return mean
