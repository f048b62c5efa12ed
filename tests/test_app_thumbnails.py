"""Thumbnails: made once per content and size, only from files the collection indexed and still holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_support import build_library
from PIL import Image

import indexer
from app import thumbnails
from ground.home import cache_dir


@pytest.fixture
def collection(pixglot_home: Path, tmp_path: Path):
    build_library(pixglot_home, tmp_path / "images", count=4)
    return indexer.open_collection("t")


def rows(collection) -> list:
    hits = collection.search("cat", k=4)
    return [collection.image(hit.image_id) for hit in hits]


def test_a_thumbnail_is_made_once_and_kept_by_content_hash(collection):
    row = rows(collection)[0]
    path = thumbnails.thumbnail(collection, row.id, row.content_hash, 32)
    assert path == cache_dir("thumbnails") / row.content_hash[:2] / f"{row.content_hash}-32.jpg"
    with Image.open(path) as image:
        assert max(image.size) == 32 and image.format == "JPEG"
    made = path.stat().st_mtime_ns
    Path(row.path).unlink()  # served from the cache from now on
    assert thumbnails.thumbnail(collection, row.id, row.content_hash, 32) == path
    assert path.stat().st_mtime_ns == made
    assert not list(cache_dir("thumbnails").rglob("*.tmp"))


def test_a_file_changed_since_indexing_gets_no_thumbnail(collection):
    same_size, other_size = rows(collection)[:2]
    data = bytearray(Path(same_size.path).read_bytes())
    data[-20] ^= 0xFF  # same size, other content: still listed, but not what was indexed
    Path(same_size.path).write_bytes(bytes(data))
    assert thumbnails.thumbnail(collection, same_size.id, same_size.content_hash) is None
    Path(other_size.path).write_bytes(b"replaced")
    assert thumbnails.thumbnail(collection, other_size.id, other_size.content_hash) is None


def test_only_images_of_the_collection_are_read(collection, tmp_path):
    row = rows(collection)[0]
    assert thumbnails.thumbnail(collection, 10**9, row.content_hash) is None  # not an id of "t"
    assert thumbnails.thumbnail(collection, row.id, "../../../etc/passwd") is None
    with pytest.raises(ValueError):
        thumbnails.cache_path("../x", 256)
    assert not collection.is_indexed(tmp_path / ".." / "etc" / "passwd")


def test_a_page_of_thumbnails_keeps_the_order_of_the_hits(collection):
    hits = collection.search("猫", k=4)
    paths = thumbnails.thumbnails(collection, hits)
    assert [p.name for p in paths] == [f"{h.metadata['content_hash']}-256.jpg" for h in hits]
