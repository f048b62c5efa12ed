"""Reading image files in worker processes: content hash, header metadata, pixels for the model.

This module is what indexing workers import, so it stays light: Pillow and numpy, no torch, no
database. Every function returns a result or a one-line reason; none raises on a bad file (and a
bug in Pixglot, which no bad file explains, raises).

Pillow's decompression-bomb guard stays on: a file over twice `Image.MAX_IMAGE_PIXELS` is refused.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from datetime import datetime

from PIL import Image, UnidentifiedImageError

from ground.pictures import (
    DECODE_ERRORS,
    MAX_FILE_BYTES,
    RefusedFile,
    open_encoded,
    open_picture,
    read_file,
)
from indexer.exif import ImageMetadata, read_metadata

HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Inspection:
    path: str
    content_hash: str
    size: int
    mtime_ns: int
    width: int
    height: int
    taken_at: datetime | None
    camera: str | None
    gps_lat: float | None
    gps_lon: float | None
    seconds: float


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str
    size: int | None = None
    mtime_ns: int | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Decoded:
    path: str
    image: Image.Image
    seconds: float


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def failure_reason(err: BaseException) -> str:
    if isinstance(err, UnidentifiedImageError):
        return "not a readable image (unknown or corrupt format)"
    if isinstance(err, Image.DecompressionBombError):
        return f"image too large to decode safely ({err})"
    if isinstance(err, RefusedFile):
        return str(err)
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    text = str(err) or type(err).__name__
    return f"cannot decode image: {text}"


def inspect_file(path: str, max_bytes: int = MAX_FILE_BYTES) -> Inspection | Failure:
    """Hash the file's bytes and read its header (size, orientation, EXIF) without decoding pixels."""
    start = time.perf_counter()
    size = mtime_ns = None
    try:
        data, stat = read_file(path, max_bytes)
        size, mtime_ns = stat.st_size, stat.st_mtime_ns
        digest = content_hash(data)
        with open_encoded(data) as img:
            width, height = img.size
            meta = _safe_metadata(img)
            if meta.orientation in (5, 6, 7, 8):
                width, height = height, width
    except DECODE_ERRORS as err:  # a bad file is reported, never fatal
        return Failure(path, failure_reason(err), size, mtime_ns, time.perf_counter() - start)
    return Inspection(
        path,
        digest,
        size,
        mtime_ns,
        width,
        height,
        meta.taken_at,
        meta.camera,
        meta.gps_lat,
        meta.gps_lon,
        time.perf_counter() - start,
    )


def _safe_metadata(img: Image.Image) -> ImageMetadata:
    try:
        return read_metadata(img.getexif())
    except Exception:  # malformed EXIF loses the metadata, not the image
        return ImageMetadata()


def load_for_model(
    src: str | os.PathLike[str] | bytes | Image.Image, image_size: int, max_bytes: int = MAX_FILE_BYTES
) -> Image.Image:
    """RGB pixels upright and cut down cheaply to between `image_size` and twice that per side
    (`ground.pictures.open_picture`): the model's own preprocessing does the final resize, and
    shrinking here keeps decoding fast and the pickled image small. Indexing and image queries both
    come through here, so an indexed image queried again gets the same vector.
    Raises the decoder's exception on a bad image (see `decode_file` for the tolerant form).
    """
    return open_picture(src, shrink_to=image_size, max_bytes=max_bytes)


def decode_file(path: str, image_size: int, max_bytes: int = MAX_FILE_BYTES) -> Decoded | Failure:
    """`load_for_model` for a worker: a bad file becomes a Failure with its reason."""
    start = time.perf_counter()
    try:
        image = load_for_model(path, image_size, max_bytes)
    except DECODE_ERRORS as err:  # a bad file is reported, never fatal
        return Failure(path, failure_reason(err), seconds=time.perf_counter() - start)
    return Decoded(path, image, time.perf_counter() - start)
