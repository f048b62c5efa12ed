"""What every renderer shares: the result type, the report, and the batch API."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ground.processes import worker_pool

# Below this many texts a process pool costs more than it saves.
_MIN_TEXTS_PER_WORKER = 64
# Texts drawn together by `render_many` in `render_batch`: large enough to share the per-call costs,
# small enough to keep a batch's buffers in a few tens of MB.
BATCH = 256


@dataclass
class RenderReport:
    """What a render could not draw faithfully. Empty lists mean the image shows all of the text."""

    missing: list[str] = field(default_factory=list)  # characters no font in the stack has a glyph for
    truncated: str = ""  # text that did not fit on the canvas (dropped at a grapheme boundary)
    replaced: list[str] = field(default_factory=list)  # characters replaced before drawing (controls, ...)
    lines: int = 0  # text lines drawn
    rows_used: int = 0  # patch rows, from the top, that hold text; the rest is background

    @property
    def complete(self) -> bool:
        return not (self.missing or self.truncated or self.replaced)

    def as_dict(self) -> dict:
        return {
            "complete": self.complete,
            "missing": [f"U+{ord(c):04X}" for c in self.missing],
            "truncated": self.truncated[:64],  # a preview; the input may have been megabytes long
            "truncated_chars": len(self.truncated),
            "replaced": [f"U+{ord(c):04X}" for c in self.replaced],
            "lines": self.lines,
            "rows_used": self.rows_used,
        }


@dataclass
class Rendering:
    image: np.ndarray  # uint8, H x W x 3
    report: RenderReport


class Renderer:
    """Base of the renderers. Subclasses implement `render_with_report`; the rest follows from it.

    A renderer is a picklable value built from its `config` (a plain dict stored in the model's
    config.json), so a model and the renderer it was trained with travel together.
    """

    style: str = ""

    def __init__(self, config: dict):
        self.config = dict(config)

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.config.get("image_size", 224)
        return (size, size) if isinstance(size, int) else tuple(size)

    @property
    def patch_size(self) -> int:
        return int(self.config.get("patch_size", 16))

    def render_with_report(self, text: str) -> Rendering:
        raise NotImplementedError

    def source_files(self) -> list[Path]:
        """The font files this renderer reads: with its config and the rendering code, everything its
        pixels depend on (the rendered-text cache keys on their bytes)."""
        raise NotImplementedError

    def render(self, text: str) -> np.ndarray:
        return self.render_with_report(text).image

    def render_many(self, texts: Sequence[str]) -> tuple[np.ndarray, list[RenderReport]]:
        """Many texts drawn: N x H x W x 3 uint8 images and the report of each, in input order.
        Renderers that draw a batch faster than one text at a time override this."""
        renderings = [self.render_with_report(text) for text in texts]
        h, w = self.image_size
        images = np.stack([r.image for r in renderings]) if renderings else np.zeros((0, h, w, 3), np.uint8)
        return images, [r.report for r in renderings]

    def render_for_model(self, texts: Sequence[str], trim: bool) -> list[tuple[np.ndarray, int | None]]:
        """Texts as a model reads them, drawn as one batch: with `trim`, each canvas cut to the patch
        rows that hold text (at least one) and that number of rows; without, the whole canvas and
        None. The canvases are views into the batch's array."""
        images, reports = self.render_many(texts)
        if not trim:
            return [(image, None) for image in images]
        grid = self.image_size[0] // self.patch_size
        rows = [min(max(1, report.rows_used), grid) for report in reports]
        return [(image[: r * self.patch_size], r) for image, r in zip(images, rows, strict=True)]

    def render_batch(self, texts: Sequence[str], workers: int | None = None) -> np.ndarray:
        """N x H x W x 3 uint8, in input order; spreads large batches over all cores."""
        texts = list(texts)
        if workers is None:
            workers = min(os.cpu_count() or 1, max(1, len(texts) // _MIN_TEXTS_PER_WORKER))
        chunk = BATCH if workers <= 1 else min(BATCH, -(-len(texts) // (workers * 4)))
        chunks = [texts[i : i + chunk] for i in range(0, len(texts), chunk)]
        if workers <= 1:
            images = [self.render_many(c)[0] for c in chunks]
        else:
            with worker_pool(workers) as pool:
                images = [images for images, _ in pool.map(self.render_many, chunks)]
        h, w = self.image_size
        return np.concatenate(images) if images else np.zeros((0, h, w, 3), np.uint8)
