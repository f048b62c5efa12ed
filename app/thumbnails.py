"""Thumbnails of indexed images, made once and kept on disk.

    PIXGLOT_HOME/cache/thumbnails/<hash[:2]>/<content hash>-<size>.jpg

Keyed by the image's content hash, so a renamed or duplicate file shares its thumbnail and an edited
one gets a new one. A thumbnail is made only from a file the collection serves (`Collection.image_path`:
an indexed path whose size is unchanged) whose bytes still hash to the indexed content, so the page
never shows a file that was not indexed. Files are written under a temporary name and renamed, so a
reader sees a whole thumbnail or none.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ground.atomic import write_atomic
from ground.home import cache_dir
from indexer.collection import Collection
from indexer.decode import MAX_FILE_BYTES, content_hash, load_for_model
from indexer.searching import Hit
from model.workers import available_cores

GRID_SIZE = 256
PREVIEW_SIZE = 768
JPEG_QUALITY = 85
_HASH = re.compile(r"[0-9a-f]{16,128}")

log = logging.getLogger(__name__)


def cache_path(digest: str, size: int) -> Path:
    if not _HASH.fullmatch(digest):
        raise ValueError(f"not a content hash: {digest!r}")
    return cache_dir("thumbnails") / digest[:2] / f"{digest}-{size}.jpg"


def thumbnail(collection: Collection, image_id: int, digest: str, size: int = GRID_SIZE) -> Path | None:
    """The cached thumbnail (longest side `size`) of image `image_id`, made now if missing; None when
    the file is gone, changed since indexing, or cannot be decoded."""
    try:
        target = cache_path(digest, size)
    except ValueError:
        return None
    if target.is_file():
        return target
    source = collection.image_path(image_id)
    if source is None:
        return None
    try:
        with open(source, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES or content_hash(data) != digest:
            return None
        image = load_for_model(data, size)
        image.thumbnail((size, size))
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, lambda tmp: image.save(tmp, "JPEG", quality=JPEG_QUALITY))
    except Exception as err:  # an unreadable file shows as "unavailable", never as an error page
        log.warning("no thumbnail for %s: %s", source, err)
        return None
    return target


def thumbnails(collection: Collection, hits: Sequence[Hit], size: int = GRID_SIZE) -> list[Path | None]:
    """Thumbnails of `hits`, in order; missing ones are made in parallel (decoding releases the GIL)."""

    def one(hit: Hit) -> Path | None:
        return thumbnail(collection, hit.image_id, str(hit.metadata.get("content_hash", "")), size)

    workers = min(len(hits), available_cores())
    if workers <= 1:
        return [one(hit) for hit in hits]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, hits))
