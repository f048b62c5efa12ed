"""Reading photos for the model: `ground.pictures`' one loader, its failures as BadImageError."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ground.errors import FileFormatError
from ground.pictures import DECODE_ERRORS, open_picture

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
    """An RGB image from a path, encoded bytes, or a Pillow image, every pixel kept, as
    `ground.pictures` says every path reads a picture. Raises BadImageError naming the source and
    the reason."""
    name = describe(src)
    try:
        return open_picture(src)
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
