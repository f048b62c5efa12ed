"""Pixglot's indexer: folders of images -> a searchable collection (SQL rows, Parquet shards, FAISS).

    from indexer import index_paths, open_collection, search
    report = index_paths(["~/Photos"], collection="photos", model="demo")
    hits = search("photos", "beach at sunset -people", k=20)
    open_collection("photos").image_path(hits[0].image_id)

Names resolve lazily so that decoding workers, which import `indexer.decode`, stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names resolve lazily at run time (below)
    from indexer.collection import Collection
    from indexer.searching import Hit, ImageQuery

_EXPORTS = {
    "Collection": "indexer.collection",
    "CollectionNotFound": "indexer.collection",
    "ModelMismatch": "indexer.collection",
    "list_collections": "indexer.collection",
    "IndexOptions": "indexer.ingest",
    "IndexReport": "indexer.ingest",
    "index_paths": "indexer.indexing",
    "reindex": "indexer.indexing",
    "rebuild": "indexer.indexing",
    "Filters": "indexer.searching",
    "Hit": "indexer.searching",
    "parse_query": "indexer.searching",
    "warm_up": "indexer.searching",
}

__all__ = [*_EXPORTS, "open_collection", "search"]


def open_collection(name: str, database: str | None = None) -> Collection:
    """The collection `name` in `database` (default: PIXGLOT_HOME's SQLite)."""
    from indexer.collection import Collection

    return Collection.open(name, database)


def search(
    collection: str,
    text: str | None = None,
    image: ImageQuery | None = None,
    *,
    database: str | None = None,
    **options,
) -> list[Hit]:
    """Ranked hits of the collection named `collection`; see `indexer.searching.search_collection`
    for the options."""
    return open_collection(collection, database).search(text, image, **options)


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'indexer' has no attribute {name!r}")
