"""Reading photos: any file Pillow knows, as 8-bit RGB, with the decompression-bomb guard left on."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pixglot.errors import FileFormatError

ImageSource = str | Path | bytes | Image.Image

# Pillow modes holding more than 8 bits per sample; Pillow's own convert("RGB") clips them at 255.
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


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

    The first frame of an animation; EXIF orientation applied (so a phone photo stands upright);
    palette, grey, alpha, CMYK and 16-bit images converted to 8-bit RGB (alpha is dropped, as a
    decoder asked for three channels does). Raises BadImageError naming the source and the reason.
    """
    name = describe(src)
    try:
        with warnings.catch_warnings():
            # Above Pillow's warning threshold but below its hard limit: keep going, the image is legal.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = src if isinstance(src, Image.Image) else _open(src)
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except FileNotFoundError:
        raise BadImageError(name, "no such file") from None
    except IsADirectoryError:
        raise BadImageError(name, "is a directory, not an image") from None
    except Image.DecompressionBombError as err:
        raise BadImageError(name, f"too large to decode safely ({err})") from None
    except Image.UnidentifiedImageError:
        raise BadImageError(name, "not an image file Pillow can identify") from None
    except BadImageError:
        raise
    except Exception as err:  # decoders raise many types (OSError, SyntaxError, ValueError, struct.error...)
        reason = str(err) or type(err).__name__
        if "truncated" in reason:
            reason = f"truncated or damaged file ({reason})"
        raise BadImageError(name, f"cannot decode: {reason}") from None


def _open(src: str | Path | bytes) -> Image.Image:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(src)))
    return Image.open(Path(src))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _WIDE_MODES:
        # 16-bit samples: scale 0..65535 to 0..255 (Pillow would clip instead).
        wide = np.asarray(image, dtype=np.float64)
        grey = np.clip(np.rint(wide * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")
