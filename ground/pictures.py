"""How an image file becomes the 8-bit RGB picture a model reads: one loader (`open_picture`) and
one policy for training, evaluation, indexing and the web page's uploads, so one file gets one
picture on every path.

- Read safely: opened without blocking and refused unless a regular file (a named pipe would wait
  for a writer forever), refused by size before it is read (MAX_FILE_BYTES), Pillow's
  decompression-bomb guard left on (a file over twice `Image.MAX_IMAGE_PIXELS` is refused).
- The first frame of an animation.

- Upright: the EXIF orientation applied (a phone photo stands as it was taken).
- Transparency composited onto white, what a viewer shows: under their alpha, Noto's emoji bitmaps
  are black, and a picture that dropped its alpha would be a black square.
- 16-bit and 32-bit integer grey scaled from 0..65535 to 0..255, whatever the picture's content
  (Pillow alone would clip everything above 255 to white).
- Everything else (palette, grey, CMYK, YCbCr, float) converted by Pillow.

Pillow and numpy only: indexing workers import this without PyTorch.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from stat import S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFMT, S_IFSOCK, S_ISREG

import numpy as np
from PIL import Image

# A file this large is not a photo we can index on a laptop-class machine; refuse it by size
# before reading it. Pixel-count bombs are caught by Pillow's guard.
MAX_FILE_BYTES = 512 << 20

# What Pillow raises on a file it cannot read: its decoders and plugins use all of these. Anything
# else is a bug in Pixglot, which must stop an indexing run rather than fail every file.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)

ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that shows the picture upright (orientation 1 needs none).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def orientation(image: Image.Image) -> int:
    """The image's EXIF orientation, 1 when it has none or an unreadable one."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # malformed EXIF loses the orientation, not the image
        return 1
    return value if value in UPRIGHT else 1


def upright(image: Image.Image, turn: int) -> Image.Image:
    """The image as EXIF orientation `turn` says to show it."""
    return image.transpose(UPRIGHT[turn]) if turn in UPRIGHT else image


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB by the policy above."""
    if image.mode == "RGB":
        return image
    if image.mode in _WIDE_MODES:
        wide = np.asarray(image, dtype=np.float64)
        grey = np.clip(np.rint(wide * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


class RefusedFile(OSError):
    """A file refused before its pixels are read: not a regular file, or over the size limit."""


_KINDS = {
    S_IFDIR: "a folder",
    S_IFIFO: "a named pipe",
    S_IFSOCK: "a socket",
    S_IFCHR: "a character device",
    S_IFBLK: "a block device",
}


def read_file(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES) -> tuple[bytes, os.stat_result]:
    """The bytes of an image file and its stat, or RefusedFile (or the OSError of opening it)."""
    # Opened without blocking: opening a named pipe for reading would otherwise wait for a writer
    # forever. What is not a regular file is refused before anything is read from it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        stat = os.fstat(fd)
        if not S_ISREG(stat.st_mode):
            raise RefusedFile(f"not a regular file ({_KINDS.get(S_IFMT(stat.st_mode), 'special file')})")
        if stat.st_size > max_bytes:
            raise RefusedFile(f"file is {stat.st_size / 2**20:.0f} MiB, over the {max_bytes >> 20} MiB limit")
        return f.read(), stat


def open_encoded(data: bytes) -> Image.Image:
    """Pillow's lazy image of encoded bytes (its header read, not its pixels)."""
    with warnings.catch_warnings():
        # Between MAX_IMAGE_PIXELS and twice that Pillow only warns (large panoramas are real
        # photos); beyond it DecompressionBombError is raised and the file is refused.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def open_picture(
    src: str | os.PathLike[str] | bytes | Image.Image,
    shrink_to: int | None = None,
    max_bytes: int = MAX_FILE_BYTES,
) -> Image.Image:
    """The RGB picture of a path, encoded bytes or a Pillow image, by the policy above.

    `shrink_to`: cut a picture larger than twice that per side down cheaply (JPEG DCT scaling while
    decoding, then a box filter) to between it and twice it, for a model that resizes to it anyway;
    None keeps every pixel (the official checkpoints' exact resize starts from the full picture).
    Raises what Pillow raises on a bad file (DECODE_ERRORS), or RefusedFile.
    """
    if isinstance(src, Image.Image):
        image = src
    else:
        data = bytes(src) if isinstance(src, bytes | bytearray | memoryview) else read_file(src, max_bytes)[0]
        image = open_encoded(data)
    image.seek(0)
    turn = orientation(image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if shrink_to and image is not src:
            image.draft("RGB", (shrink_to, shrink_to))
        image.load()
    image = to_rgb(image)
    if shrink_to:
        factor = (max(1, image.width // shrink_to), max(1, image.height // shrink_to))
        if factor != (1, 1):
            image = image.reduce(factor)
    # A fresh image without the file's EXIF/XMP, so that nothing downstream turns it a second time.
    shown = upright(image, turn).copy()
    shown.info = {}
    return shown
