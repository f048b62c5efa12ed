"""How a decoded image becomes the 8-bit RGB picture a model reads: one policy for training,
evaluation, indexing and the web page's uploads, so one file gets one picture on every path.

- Upright: the EXIF orientation applied (a phone photo stands as it was taken).
- Transparency composited onto white, what a viewer shows: under their alpha, Noto's emoji bitmaps
  are black, and a picture that dropped its alpha would be a black square.
- 16-bit and 32-bit integer grey scaled from 0..65535 to 0..255, whatever the picture's content
  (Pillow alone would clip everything above 255 to white).
- Everything else (palette, grey, CMYK, YCbCr, float) converted by Pillow.

Pillow and numpy only: indexing workers import this without PyTorch.
"""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image

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
