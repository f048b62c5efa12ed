"""Generated sample photos for tests and benchmarks: distinct, smooth like photographs, optional EXIF."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class SampleExif:
    taken_at: datetime | None = None
    make: str | None = None
    model: str | None = None
    gps: tuple[float, float] | None = None  # latitude, longitude in degrees
    orientation: int | None = None


def sample_image(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A smooth random RGB picture (low-frequency colour fields plus a little grain); equal seeds,
    equal pictures."""
    rng = np.random.default_rng(seed)
    width, height = size
    coarse = rng.integers(0, 256, (4 + seed % 5, 4 + seed % 3, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    grain = rng.integers(-8, 9, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + grain, 0, 255).astype(np.uint8))


def _exif(meta: SampleExif) -> Image.Exif:
    exif = Image.Exif()
    if meta.make:
        exif[0x010F] = meta.make
    if meta.model:
        exif[0x0110] = meta.model
    if meta.orientation:
        exif[0x0112] = meta.orientation
    if meta.taken_at:
        exif.get_ifd(0x8769)[0x9003] = meta.taken_at.strftime("%Y:%m:%d %H:%M:%S")
    if meta.gps:
        gps = exif.get_ifd(0x8825)
        for (ref_tag, value_tag), value, refs in zip(((1, 2), (3, 4)), meta.gps, ("NS", "EW"), strict=True):
            degrees = abs(value)
            minutes = (degrees - int(degrees)) * 60
            gps[ref_tag] = refs[0] if value >= 0 else refs[1]
            gps[value_tag] = (
                float(int(degrees)),
                float(int(minutes)),
                round((minutes - int(minutes)) * 60, 4),
            )
    return exif


def write_image(
    path: Path, seed: int, size: tuple[int, int] = (64, 48), exif: SampleExif | None = None, quality: int = 90
) -> Path:
    """Write sample `seed` to `path`; the suffix picks the format (.jpg, .png, .webp, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sample_image(seed, size)
    options: dict = {"exif": _exif(exif)} if exif else {}
    if path.suffix.lower() in (".jpg", ".jpeg", ".webp"):
        options["quality"] = quality
    image.save(path, **options)
    return path


def write_images(
    folder: Path,
    count: int,
    first_seed: int = 0,
    size: tuple[int, int] = (64, 48),
    suffixes: tuple[str, ...] = (".jpg", ".png"),
) -> list[Path]:
    """`count` distinct sample images named img00000.jpg, img00001.png, ... under `folder`."""
    return [
        write_image(folder / f"img{seed:05d}{suffixes[seed % len(suffixes)]}", seed, size)
        for seed in range(first_seed, first_seed + count)
    ]
