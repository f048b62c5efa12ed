"""Reading photos: any file Pillow knows, as 8-bit RGB, with the decompression-bomb guard left on."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image

from ground.errors import FileFormatError
from ground.pictures import DECODE_ERRORS, orientation, to_rgb, upright

ImageSource = str | Path | bytes | Image.Image


class BadImageError(FileFormatError):
    """An image that cannot be read: missing, not an image, truncated, or too large to decode safely."""


def describe(src: ImageSource) -> str:
    """How errors name an image: its path, or what kind of in-memory object it is."""
    if isinstance(src, (str, Path)):
        return str(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    return f"<{type(src).__name__}>"


def open_image(src: ImageSource) -> Image.Image:
    """An RGB image from a path, encoded bytes, or a Pillow image.

    The first frame of an animation, as `ground.pictures` says every path reads a picture: upright
    by its EXIF orientation, transparency composited onto white, 16-bit grey scaled to 8 bits.
    Raises BadImageError naming the source and the reason.
    """
    name = describe(src)
    try:
        with warnings.catch_warnings():
            # Above Pillow's warning threshold but below its hard limit: keep going, the image is legal.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = src if isinstance(src, Image.Image) else _open(src)
            image.seek(0)
            image.load()
            return to_rgb(upright(image, orientation(image)))
    except FileNotFoundError:
        raise BadImageError(name, "no such file") from None
    except IsADirectoryError:
        raise BadImageError(name, "is a directory, not an image") from None
    except Image.DecompressionBombError as err:
        raise BadImageError(name, f"too large to decode safely ({err})") from None
    except Image.UnidentifiedImageError:
        raise BadImageError(name, "not an image file Pillow can identify") from None
    except DECODE_ERRORS as err:
        reason = str(err) or type(err).__name__
        if "truncated" in reason:
            reason = f"truncated or damaged file ({reason})"
        raise BadImageError(name, f"cannot decode: {reason}") from None


def _open(src: str | Path | bytes) -> Image.Image:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(src)))
    return Image.open(Path(src))
