"""Reading image files in worker processes: content hash, header metadata, pixels for the model.

This module is what indexing workers import, so it stays light: Pillow and numpy, no torch, no
database. Every function returns a result or a one-line reason; none raises on a bad file (and a
bug in Pixglot, which no bad file explains, raises).

Pillow's decompression-bomb guard stays on: a file over twice `Image.MAX_IMAGE_PIXELS` is refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from stat import S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFMT, S_IFSOCK, S_ISREG

from PIL import Image, UnidentifiedImageError

from ground.pictures import DECODE_ERRORS, orientation, to_rgb, upright
from indexer.exif import ImageMetadata, read_metadata

HASH_CHUNK = 1 << 20
# A file this large is not a photo we can index on a laptop-class machine; refuse it by size
# before reading it. Pixel-count bombs are caught by Pillow's guard.
MAX_FILE_BYTES = 512 << 20


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


def _read(path: str, max_bytes: int) -> tuple[bytes, os.stat_result]:
    # Opened without blocking: opening a named pipe for reading would otherwise wait for a writer
    # forever. What is not a regular file is refused before anything is read from it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        stat = os.fstat(fd)
        if not S_ISREG(stat.st_mode):
            raise _NotRegular(f"not a regular file ({_KINDS.get(S_IFMT(stat.st_mode), 'special file')})")
        if stat.st_size > max_bytes:
            raise _TooLarge(f"file is {stat.st_size / 2**20:.0f} MiB, over the {max_bytes >> 20} MiB limit")
        return f.read(), stat


_KINDS = {
    S_IFDIR: "a folder",
    S_IFIFO: "a named pipe",
    S_IFSOCK: "a socket",
    S_IFCHR: "a character device",
    S_IFBLK: "a block device",
}


class _TooLarge(OSError):
    pass


class _NotRegular(OSError):
    pass


def _open(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        # Between MAX_IMAGE_PIXELS and twice that Pillow only warns (large panoramas are real
        # photos); beyond it DecompressionBombError is raised and the file is refused.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def failure_reason(err: BaseException) -> str:
    if isinstance(err, UnidentifiedImageError):
        return "not a readable image (unknown or corrupt format)"
    if isinstance(err, Image.DecompressionBombError):
        return f"image too large to decode safely ({err})"
    if isinstance(err, _TooLarge | _NotRegular):
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
        data, stat = _read(path, max_bytes)
        size, mtime_ns = stat.st_size, stat.st_mtime_ns
        digest = content_hash(data)
        with _open(data) as img:
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
    """RGB pixels upright and cut down cheaply to between `image_size` and twice that per side.

    The model's own preprocessing does the final resize; shrinking here (JPEG DCT scaling, then a
    box filter) keeps decoding fast and the pickled image small. Indexing and image queries both
    come through here, so an indexed image queried again gets the same vector.
    Raises the decoder's exception on a bad image (see `decode_file` for the tolerant form).
    """
    if isinstance(src, Image.Image):
        img = src
        turn = orientation(img)
    else:
        data = src if isinstance(src, bytes) else _read(os.fspath(src), max_bytes)[0]
        img = _open(data)
        turn = orientation(img)
        img.draft("RGB", (image_size, image_size))
        img.load()
    # The colours, transparency and orientation policy of every path (ground.pictures); only the
    # cheap shrink of pictures over twice the model's size is this path's own.
    img = to_rgb(img)
    factor = (max(1, img.width // image_size), max(1, img.height // image_size))
    if factor != (1, 1):
        img = img.reduce(factor)
    img = upright(img, turn)
    # A fresh image without the file's EXIF/XMP, so that nothing downstream turns it a second time.
    shown = img.copy()
    shown.info = {}
    return shown


def decode_file(path: str, image_size: int, max_bytes: int = MAX_FILE_BYTES) -> Decoded | Failure:
    """`load_for_model` for a worker: a bad file becomes a Failure with its reason."""
    start = time.perf_counter()
    try:
        image = load_for_model(path, image_size, max_bytes)
    except DECODE_ERRORS as err:  # a bad file is reported, never fatal
        return Failure(path, failure_reason(err), seconds=time.perf_counter() - start)
    return Decoded(path, image, time.perf_counter() - start)
