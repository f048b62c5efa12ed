"""Pixels the model reads: photos resized as the model was trained, and any uint8 image mapped to the
model's value range.

For the CLIPPO checkpoints this equals big_vision's `decode|resize(224)|value_range(-1,1)`:
`tf.image.resize` bilinear with half-pixel centres and no antialiasing to exactly 224 x 224 (the
aspect ratio is not kept), then, because big_vision's resize op casts back to the input's dtype,
clipping to [0, 255] and truncation to uint8, and finally v -> -1 + 2 v / 255.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ground.errors import InputError
from model.images import ImageSource, open_image

DEFAULT_PREPROCESSING = {"resize": "squash", "method": "bilinear", "antialias": False, "value_range": [-1, 1]}


def check_preprocessing(config: dict) -> dict:
    """The preprocessing dict with defaults filled in; InputError for values Pixglot cannot apply."""
    cfg = {**DEFAULT_PREPROCESSING, **config}
    # One resize is implemented, the one the CLIPPO models were trained with; the keys say so explicitly.
    for key in ("resize", "method", "antialias"):
        if cfg[key] != DEFAULT_PREPROCESSING[key]:
            raise InputError(
                f"preprocessing {key}={cfg[key]!r}: only {DEFAULT_PREPROCESSING[key]!r} is supported"
            )
    low, high = cfg["value_range"]
    if not low < high:
        raise InputError(
            f"preprocessing value_range={cfg['value_range']!r}: expected [low, high] with low < high"
        )
    return cfg


def sample_points(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output pixel: lower and upper input index and the weight of the upper one, computed in
    float32 exactly as TensorFlow's half-pixel-centre bilinear kernel does."""
    scale = np.float32(in_size) / np.float32(out_size)
    centre = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(centre)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(centre).astype(np.int64), in_size - 1)
    return lower, upper, (centre - floor).astype(np.float32)


def resize(image: np.ndarray | Image.Image, size: int) -> np.ndarray:
    """uint8 H x W x 3 -> uint8 size x size x 3: `tf.image.resize(bilinear, antialias=False)`
    followed by big_vision's clip and cast back to uint8.

    The arithmetic is TensorFlow's, in float32 and in its order (lerp along x, then along y), because
    the final truncation turns any difference in rounding into a whole grey level. Only the four
    input pixels around each output pixel are read: a large photo is never converted to floats.
    """
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise InputError(f"expected an H x W x 3 uint8 image, got {pixels.dtype} {pixels.shape}")
    y0, y1, y_lerp = sample_points(pixels.shape[0], size)
    x0, x1, x_lerp = sample_points(pixels.shape[1], size)
    x_lerp = x_lerp[None, :, None]
    top_rows, bottom_rows = pixels[y0], pixels[y1]
    top_left, top_right = top_rows[:, x0].astype(np.float32), top_rows[:, x1].astype(np.float32)
    bottom_left, bottom_right = bottom_rows[:, x0].astype(np.float32), bottom_rows[:, x1].astype(np.float32)
    top = top_left + (top_right - top_left) * x_lerp
    bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
    out = top + (bottom - top) * y_lerp[:, None, None]
    # Clip, then truncate toward zero: tf.cast(float -> uint8) after big_vision's clip_by_value.
    return np.clip(out, 0, 255).astype(np.uint8)


def to_value_range(
    pixels: np.ndarray, value_range: tuple[float, float] | list[float] = (-1, 1)
) -> np.ndarray:
    """uint8 (..., H, W, 3) -> float32 in [low, high]: low + (high - low) * v / 255."""
    low, high = (float(v) for v in value_range)
    x = np.asarray(pixels, dtype=np.float32)
    return (low + (high - low) * (x / np.float32(255))).astype(np.float32, copy=False)


def prepare_image(src: ImageSource, size: int, preprocessing: dict) -> np.ndarray:
    """Decode and resize one image: uint8 size x size x 3 (raises model.images.BadImageError)."""
    check_preprocessing(preprocessing)
    return resize(np.asarray(open_image(src)), size)
