"""What the search page asks a collection for, and asking it. No Streamlit here: the page, its tests and
the benchmark share these functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ground.errors import InputError
from indexer.collection import Collection
from indexer.decode import content_hash
from indexer.searching import Filters, Hit, parse_query

if TYPE_CHECKING:
    from model import Encoder

PAGE_SIZE = 24
MAX_UPLOAD_MB = 20
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB << 20
# An uploaded query image is kept (in the user's session) at most this large: the model reads 224 px.
UPLOAD_KEEP_SIDE = 1024


@dataclass(frozen=True)
class ImageQuery:
    """The image half of a query: an upload, or an image of the collection ("more like this")."""

    key: str  # identifies the image in a query's signature
    label: str  # what the page calls it: the upload's or the indexed file's name
    pixels: Image.Image | None = field(default=None, compare=False)  # an upload, decoded
    image_id: int | None = None  # an image of `collection`
    collection: str | None = None


@dataclass(frozen=True)
class SearchRequest:
    collection: str
    text: str = ""
    image: ImageQuery | None = None
    image_weight: float = 0.5
    folder: str = ""
    date_from: date | None = None
    date_to: date | None = None
    camera: str = ""

    @property
    def empty(self) -> bool:
        """Nothing to rank by: no image and no positive words (negative terms alone rank nothing)."""
        return self.image is None and not parse_query(self.text).text

    def filters(self) -> Filters:
        return Filters(
            path_prefix=self.folder.strip() or None,
            date_from=self.date_from,
            date_to=self.date_to,
            camera=self.camera.strip() or None,
        )

    def signature(self) -> tuple:
        """Equal for requests that rank the same images the same way (results are kept per signature)."""
        image = self.image.key if self.image is not None else None
        weight = self.image_weight if self.image is not None and self.text.strip() else None
        return (self.collection, self.text.strip(), image, weight, self.filters())


def read_upload(name: str, data: bytes) -> ImageQuery:
    """An uploaded query image, size-checked and decoded with Pillow's decompression-bomb guard on."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise InputError(
            f"{name}: {len(data) / 2**20:.1f} MiB is over the {MAX_UPLOAD_MB} MiB limit for a query image"
        )
    from model.images import BadImageError, open_image  # imports PyTorch: only when an image comes

    try:
        image = open_image(data)
    except BadImageError as err:
        raise InputError(f"{name}: {err.reason}") from None
    image.thumbnail((UPLOAD_KEEP_SIDE, UPLOAD_KEEP_SIDE))
    return ImageQuery(key=f"upload:{content_hash(data)}", label=name, pixels=image)


def indexed_image(collection: Collection, image_id: int, label: str) -> ImageQuery:
    return ImageQuery(
        key=f"image:{collection.uid}:{image_id}",
        label=label,
        image_id=int(image_id),
        collection=collection.name,
    )


def _image_argument(collection: Collection, image: ImageQuery | None) -> np.ndarray | Path | None:
    if image is None:
        return None
    if image.pixels is not None:
        return image.pixels
    if image.collection != collection.name:
        raise InputError(f"{image.label} belongs to collection {image.collection!r}; clear the image query")
    path = collection.image_path(image.image_id)
    if path is None:
        raise InputError(f"{image.label} is no longer available (moved, deleted or changed since indexing)")
    return path


def run_search(collection: Collection, request: SearchRequest, offset: int, k: int) -> list[Hit]:
    """Hits offset..offset+k for `request` (searches of one shared collection take turns on its lock)."""
    return collection.search(
        request.text.strip() or None,
        _image_argument(collection, request.image),
        k=k,
        offset=offset,
        filters=request.filters(),
        image_weight=request.image_weight,
    )


@dataclass(frozen=True)
class ModelView:
    label: str  # "query", or "not: people (weight 0.5)"
    text: str
    pixels: np.ndarray  # uint8 H x W x 3


def model_views(encoder: Encoder, text: str) -> list[ModelView]:
    """The renderings the model reads for a text query: the positive words, then each negative term."""
    parsed = parse_query(text)
    views = []
    if parsed.text:
        views.append(ModelView("query", parsed.text, encoder.render_query(parsed.text)))
    for term, weight in parsed.negatives:
        views.append(ModelView(f"not (weight {weight:g})", term, encoder.render_query(term)))
    return views
