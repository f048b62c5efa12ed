"""`model.preprocess.resize` for a batch of pictures of any sizes, on the model's device.

The result equals `preprocess.resize` of each picture bit for bit: the sample points and weights
are the same float32 numbers (computed on the host by `preprocess.sample_points`), and the lerps
are the same float32 operations in the same order, each a separate elementwise kernel, so no
fused multiply-add can round differently. On a GPU this takes the resize off the host cores that
decode, and one gather serves the whole batch however many sizes it mixes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ground.errors import InputError
from model.preprocess import sample_points


def resize_batch(pictures: Sequence[np.ndarray], size: int, device: torch.device | str) -> torch.Tensor:
    """uint8 H x W x 3 pictures -> (N, size, size, 3) uint8 on `device`."""
    for index, picture in enumerate(pictures):
        if picture.dtype != np.uint8 or picture.ndim != 3 or picture.shape[2] != 3:
            raise InputError(
                f"picture #{index}: expected H x W x 3 uint8, got {picture.dtype} {picture.shape}"
            )
    if not pictures:
        return torch.zeros((0, size, size, 3), dtype=torch.uint8, device=device)
    if all(picture.shape[:2] == (size, size) for picture in pictures):
        # The resize of a picture to its own size is the identity (every weight is 0).
        return torch.from_numpy(np.stack(pictures)).to(device)
    heights = np.array([p.shape[0] for p in pictures], dtype=np.int64)
    widths = np.array([p.shape[1] for p in pictures], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(heights * widths)[:-1]])
    y_points = [sample_points(int(h), size) for h in heights]
    x_points = [sample_points(int(w), size) for w in widths]
    # Row starts in the flat buffer of all pixels: (N, size) for the upper and lower input rows.
    row_above = starts[:, None] + np.stack([y0 for y0, _, _ in y_points]) * widths[:, None]
    row_below = starts[:, None] + np.stack([y1 for _, y1, _ in y_points]) * widths[:, None]

    def on_device(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(device)

    flat = on_device(np.concatenate([p.reshape(-1, 3) for p in pictures]))
    above, below = on_device(row_above), on_device(row_below)
    left = on_device(np.stack([x0 for x0, _, _ in x_points]))
    right = on_device(np.stack([x1 for _, x1, _ in x_points]))
    x_lerp = on_device(np.stack([w for _, _, w in x_points]))[:, None, :, None]
    y_lerp = on_device(np.stack([w for _, _, w in y_points]))[:, :, None, None]

    def corner(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        return flat[rows[:, :, None] + columns[:, None, :]].to(torch.float32)

    top_left, top_right = corner(above, left), corner(above, right)
    bottom_left, bottom_right = corner(below, left), corner(below, right)
    top = top_left + (top_right - top_left) * x_lerp
    bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
    out = top + (bottom - top) * y_lerp
    # Clip, then truncate toward zero, as preprocess.resize (big_vision's cast back to uint8).
    return out.clamp_(0, 255).to(torch.uint8)
