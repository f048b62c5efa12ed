"""Everything a training run reads, held where the model runs, and batches gathered from it there.

The pictures (each image decoded and resized once, uint8) and the rendered texts (the patch rows of
`rendering.text_cache`, one gray channel) live on the model's device when they fit, half of its free
memory at most: a step then moves a few index arrays to the device and gathers its pixels there,
with no worker processes in the loop and no pixels crossing a process or the PCIe bus. Data that
does not fit stays in host memory (the texts memory-mapped from the cache), and each batch is
gathered there and copied over.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ground.errors import PixglotError
from model.encoder import prepare_for_model
from model.workers import ordered_map
from rendering.text_cache import RenderedTexts

_MIN_IMAGES_FOR_WORKERS = 64


def decode_pictures(
    images: Sequence[bytes | None], names: Sequence[str], size: int, preprocessing: dict
) -> np.ndarray:
    """(N, size, size, 3) uint8, image i resized as the model reads it; decoded on all cores.
    A missing or undecodable image stops training with its name (`names[i]`) and the reason."""
    missing = next((i for i, data in enumerate(images) if data is None), None)
    if missing is not None:
        raise PixglotError(f"training data: {names[missing]}: the image is empty (null)")
    task = functools.partial(prepare_for_model, size=size, preprocessing=preprocessing)
    out = np.zeros((len(images), size, size, 3), np.uint8)
    for i, (array, error) in enumerate(ordered_map(task, images, min_items=_MIN_IMAGES_FOR_WORKERS)):
        if error is not None:
            raise PixglotError(f"training data: {names[i]}: {error[1]}")
        out[i] = array
    return out


def _fits(device: torch.device, nbytes: int) -> bool:
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= free // 2


class TrainingPixels:
    """The pictures (by key) and rendered texts (by cache number) of a run, and batches of them as
    the network reads them: float (N, 3, H, W) in the model's value range, on the model's device."""

    def __init__(
        self,
        texts: RenderedTexts,
        pictures: np.ndarray | None,
        device: torch.device,
        value_range: Sequence[float],
        resident: bool | str = "auto",
    ):
        self.device = device
        self.low, self.high = (float(v) for v in value_range)
        self.text_count = texts.count  # host copy: batches are grouped by height on the host
        nbytes = texts.rows.nbytes + (pictures.nbytes if pictures is not None else 0)
        if resident == "auto":
            resident = _fits(device, nbytes)
        self.resident = bool(resident)
        self.storage = device if self.resident else torch.device("cpu")
        self.patch, self.width = texts.rows.shape[1:]
        self.rows = torch.from_numpy(texts.rows).to(self.storage)
        self.start = torch.from_numpy(texts.start).to(self.storage)
        self.count = torch.from_numpy(texts.count).to(self.storage)
        self.pictures_by_key = None if pictures is None else torch.from_numpy(pictures).to(self.storage)

    def to_model(self, uint8: Tensor) -> Tensor:
        """uint8 (N, H, W, 3) or gray (N, H, W) -> float (N, 3, H, W) in the value range, on the device."""
        x = uint8.to(self.device, non_blocking=True)
        x = self.low + (self.high - self.low) * (x.to(torch.float32) / 255)
        if x.ndim == 3:
            return x[:, None].expand(-1, 3, -1, -1)
        return x.permute(0, 3, 1, 2)

    def pictures(self, keys: Tensor) -> Tensor:
        if self.pictures_by_key is None:
            raise PixglotError("this run's images are not held in memory; its batches carry their pixels")
        return self.to_model(self.pictures_by_key[keys.to(self.storage, non_blocking=True)])

    def texts(self, ids: Tensor, rows: int) -> Tensor:
        """The texts' top `rows` patch rows; the rows below a text's own are blank (read them with
        `row_counts`, which masks them)."""
        ids = ids.to(self.storage, non_blocking=True)
        row = torch.arange(rows, device=self.storage)
        index = torch.where(row < self.count[ids, None], self.start[ids, None] + row, 0)  # row 0: blank
        gray = self.rows[index].reshape(len(ids), rows * self.patch, self.width)
        return self.to_model(gray)

    def row_counts(self, ids: Tensor) -> Tensor:
        return self.count[ids.to(self.storage, non_blocking=True)].to(self.device, non_blocking=True)
