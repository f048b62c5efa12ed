"""Searching a collection: text (any language), image, or both; negative terms; filters; pages.

Query syntax for text: words are the query; a word or "quoted phrase" after a minus is a negative
term, optionally weighted: `beach -people`, `beach -"red umbrella":0.3`. The query vector is
    normalise((1 - w) * text + w * image) - sum(weight_i * negative_i)
so a hit's score is its cosine similarity to the positive part minus the weighted similarities to
the negative terms, and a negative term pushes down the images that resemble it.

Filters (path prefix, capture date range, camera) run in SQL. A filter that leaves few images is
searched exactly over those images' stored vectors; a broad one searches FAISS for more hits than
asked and drops those that fail it, asking for more until the page is full. Hits are ordered by
score, then id, so pages do not overlap or skip. (On an IVF index a page deeper than the lists
searched can hold widens the search to more lists; its ranking is then a little more exact than
that of the first pages, so a hit can move between pages at that depth.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image
from sqlalchemy import Text, func, select, type_coerce

from ground import db
from ground.errors import FileFormatError, InputError
from ground.paths import printable, to_stored
from ground.pictures import DECODE_ERRORS
from indexer.decode import failure_reason, load_for_model
from indexer.scan import normalise_path

if TYPE_CHECKING:
    # A Collection calls this module to search itself: it is named here, not imported at run time.
    from indexer.collection import Collection, ImageRow
    from indexer.vector_index import VectorIndex
    from model import Encoder

DEFAULT_NEGATIVE_WEIGHT = 0.5
DEFAULT_IMAGE_WEIGHT = 0.5
# A filter matching at most this many images (or this share of the collection) is searched
# exactly over their vectors; a broader one by over-fetching from FAISS.
EXACT_FILTER_LIMIT = 20_000
EXACT_FILTER_SHARE = 0.02
MAX_PAGE = 10_000

_TOKEN = re.compile(r'-"[^"]*"(?::\S*)?|"[^"]*"|\S+')

ImageQuery = str | os.PathLike[str] | bytes | Image.Image


class ParsedQuery(NamedTuple):
    text: str
    negatives: tuple[tuple[str, float], ...] = ()


def parse_query(text: str) -> ParsedQuery:
    """Split `beach -people:0.5 -"red car"` into the positive text and weighted negative terms."""
    positive: list[str] = []
    negatives: list[tuple[str, float]] = []
    for token in _TOKEN.findall(text or ""):
        body = token[1:]
        if not token.startswith("-") or not body or not (body[0].isalpha() or body[0] == '"'):
            positive.append(token[1:-1] if len(token) > 1 and token[0] == token[-1] == '"' else token)
            continue
        weight = DEFAULT_NEGATIVE_WEIGHT
        term, sep, suffix = body.rpartition(":")
        if sep and term:
            try:
                weight = float(suffix)
            except ValueError:
                term = body
            else:
                if not 0 <= weight <= 10:
                    raise InputError(f"negative term {token!r}: weight {suffix} is not between 0 and 10")
        else:
            term = body
        term = term[1:-1] if len(term) > 1 and term[0] == term[-1] == '"' else term
        if term.strip():
            negatives.append((term, weight))
    return ParsedQuery(" ".join(positive).strip(), tuple(negatives))


def _day_start(value: date | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.combine(value, time.min)


@dataclass(frozen=True)
class Filters:
    path_prefix: str | None = None  # an absolute path prefix ("~" expanded); a trailing "/" means a folder
    date_from: date | datetime | None = None  # EXIF capture time, inclusive; a date means that whole day
    date_to: date | datetime | None = None
    camera: str | None = None  # case-insensitive substring of "make model"

    @property
    def active(self) -> bool:
        return any(v not in (None, "") for v in (self.path_prefix, self.date_from, self.date_to, self.camera))

    def clauses(self) -> list:
        c = db.images.c
        where = []
        if self.path_prefix:
            prefix = normalise_path(self.path_prefix)
            if str(self.path_prefix).endswith(("/", os.sep)) and not prefix.endswith(os.sep):
                prefix += os.sep
            # LIKE escaping must apply to the stored form, so compare it as plain text.
            where.append(type_coerce(c.path, Text).startswith(to_stored(prefix), autoescape=True))
        if self.date_from is not None:
            where.append(c.taken_at >= _day_start(self.date_from))
        if self.date_to is not None:
            if isinstance(self.date_to, datetime):
                where.append(c.taken_at <= self.date_to)
            else:
                where.append(c.taken_at < _day_start(self.date_to + timedelta(days=1)))
        if self.camera:
            where.append(func.lower(c.camera).contains(self.camera.lower(), autoescape=True))
        return where


@dataclass(frozen=True)
class Hit:
    image_id: int
    path: str
    score: float
    metadata: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        path = printable(self.path)  # JSON carries no lone surrogates: bytes that are not UTF-8 as \xNN
        return {"image_id": self.image_id, "path": path, "score": round(self.score, 6), **self.metadata}


def query_vector(
    collection: Collection,
    text: str | None = None,
    image: ImageQuery | None = None,
    negatives: Sequence[tuple[str, float]] = (),
    image_weight: float = DEFAULT_IMAGE_WEIGHT,
    encoder: Encoder | None = None,
) -> np.ndarray:
    encoder = encoder or collection.encoder()
    positive = []
    if text:
        positive.append((1.0 - image_weight if image is not None else 1.0, encoder.encode_texts([text])[0]))
    if image is not None:
        pixels = _query_image(image, encoder.image_size)
        positive.append((image_weight if text else 1.0, encoder.encode_images([pixels])[0]))
    if not positive:
        raise InputError("empty query: give a text, an image, or both (negative terms alone rank nothing)")
    vector = sum(w * v for w, v in positive)
    vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
    if negatives:
        encoded = encoder.encode_texts([term for term, _ in negatives])
        for (_, weight), negative in zip(negatives, encoded, strict=True):
            vector = vector - weight * negative
    return np.asarray(vector, dtype=np.float32)


def _query_image(image: ImageQuery, image_size: int) -> Image.Image:
    try:
        return load_for_model(image, image_size)
    except DECODE_ERRORS as err:  # a file Pillow cannot read becomes one line naming it
        name = os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"<{type(image).__name__}>"
        raise FileFormatError(name, failure_reason(err)) from None


def search_collection(
    collection: Collection,
    text: str | None = None,
    image: ImageQuery | None = None,
    *,
    k: int = 10,
    offset: int = 0,
    min_score: float | None = None,
    filters: Filters | None = None,
    negatives: Sequence[tuple[str, float]] | None = None,
    image_weight: float = DEFAULT_IMAGE_WEIGHT,
    model: str | None = None,
) -> list[Hit]:
    """Hits offset..offset+k of the ranking, best first. `text` may carry negative terms
    (`beach -people:0.5`); `negatives` adds more. `model` names the model to query with: it must
    be the collection's (an error otherwise)."""
    if not 1 <= k <= MAX_PAGE:
        raise InputError(f"k={k}: must be between 1 and {MAX_PAGE}")
    if offset < 0:
        raise InputError(f"offset={offset}: must be 0 or more")
    if not 0 <= image_weight <= 1:
        raise InputError(f"image weight {image_weight}: must be between 0 and 1")
    with collection.lock:
        vector = _vector(collection, text, image, negatives, image_weight, model)
        return _rank(collection, vector, filters or Filters(), offset, offset + k, min_score)


def _vector(
    collection: Collection,
    text: str | None,
    image: ImageQuery | None,
    negatives: Sequence[tuple[str, float]] | None,
    image_weight: float,
    model: str | None,
) -> np.ndarray:
    """The query's vector, with the collection's model (or `model`, checked to be the same)."""
    encoder = None
    if model is not None:
        import model as model_module

        encoder = model_module.load(model)
        collection.check_model(encoder, model)
    parsed = parse_query(text or "")
    terms = list(parsed.negatives) + list(negatives or ())
    return query_vector(collection, parsed.text, image, terms, image_weight, encoder)


def _rank(
    collection: Collection,
    vector: np.ndarray,
    filters: Filters,
    offset: int,
    need: int,
    min_score: float | None,
) -> list[Hit]:
    """Hits offset..need of the ranking: exactly among the matching images when a filter leaves
    few, else from the vector index, asked for more until the page is full."""
    index = collection.vector_index()
    where = filters.clauses()
    share = 1.0
    if filters.active:
        with collection.engine.connect() as conn:
            matching = conn.execute(
                select(func.count()).where(db.images.c.collection_id == collection.id).where(*where)
            ).scalar_one()
        if matching == 0:
            return []
        if matching <= max(EXACT_FILTER_LIMIT, EXACT_FILTER_SHARE * index.state.live):
            ranked = _exact_within(collection, index, vector, where)
            return _page(collection, ranked, offset, need, min_score)
        share = matching / max(index.state.live, 1)
    ranked, rows = _approximate(collection, index, vector, where, need, min_score, share)
    return [_hit(rows[i], s) for s, i in ranked[offset:need]]


def _approximate(
    collection: Collection,
    index: VectorIndex,
    vector: np.ndarray,
    where: list,
    need: int,
    min_score: float | None,
    share: float,
) -> tuple[list[tuple[float, int]], dict[int, ImageRow]]:
    """The best `need` (score, id) pairs the index finds among the images `where` selects (a
    `share` of the collection), and their rows: the index is asked for more, or searches more of
    its lists, until enough pass the filter and `min_score`, or nothing is left to find."""
    fetch = min(index.state.ntotal, int(max(2 * need, 32) / share) + 1)
    widen = 1
    while True:
        scores, ids = index.search(vector, fetch, widen)
        scores, ids = scores[0], ids[0]
        valid = ids >= 0
        rows = collection.images(ids[valid], where=where)
        ranked = sorted(
            ((float(s), int(i)) for s, i in zip(scores[valid], ids[valid], strict=True) if int(i) in rows),
            key=lambda pair: (-pair[0], pair[1]),
        )
        if min_score is not None:
            ranked = [pair for pair in ranked if pair[0] >= min_score]
        # Scores come best first: once the last real one is under the threshold, so is the rest.
        below_threshold = min_score is not None and valid.any() and float(scores[valid][-1]) < min_score
        if len(ranked) >= need or below_threshold:
            return ranked, rows
        if len(ids) and ids[-1] < 0:
            # Padding: the IVF lists searched hold no more entries. Search more lists, if any.
            if not index.can_widen(widen):
                return ranked, rows
            widen *= 4
        elif fetch >= index.state.ntotal:
            return ranked, rows
        else:
            fetch = min(index.state.ntotal, fetch * 4)


def _exact_within(
    collection: Collection, index: VectorIndex, vector: np.ndarray, where: list
) -> list[tuple[float, int]]:
    with collection.engine.connect() as conn:
        ids = np.fromiter(
            conn.execute(
                select(db.images.c.id).where(db.images.c.collection_id == collection.id).where(*where)
            ).scalars(),
            dtype=np.int64,
        )
    found, scores = index.score_ids(vector, ids)
    return sorted(zip(scores.tolist(), found.tolist(), strict=True), key=lambda pair: (-pair[0], pair[1]))


def _page(
    collection: Collection, ranked: list[tuple[float, int]], offset: int, need: int, min_score: float | None
) -> list[Hit]:
    if min_score is not None:
        ranked = [pair for pair in ranked if pair[0] >= min_score]
    page = ranked[offset:need]
    rows = collection.images(i for _, i in page)
    return [_hit(rows[i], s) for s, i in page if i in rows]


def _hit(row: ImageRow, score: float) -> Hit:
    return Hit(row.id, row.path, score, row.metadata())


# Scripts, joining, right-to-left runs, an emoji and a line break: a text that takes the renderer's
# code down every path a query can.
WARM_UP_TEXT = "Pixglot 猫 قطة на دیوار कुत्ता 🐱 (12) — a line long enough to wrap onto the next one, שלום"


def warm_up(collection: Collection) -> Encoder:
    """Do now what a process's first search would do: load the model, compile the renderer's code (or
    load it from numba's cache, where a warm-up in an earlier process put it) and load the FAISS
    index. The first query then answers as fast as the next ones. Returns the encoder."""
    encoder = collection.encoder()
    encoder.encode_texts([WARM_UP_TEXT])
    collection.vector_index()
    return encoder
