"""What every renderer shares: the result type, the report, and the batch API."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

# Below this many texts a process pool costs more than it saves.
_MIN_TEXTS_PER_WORKER = 64


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

    def render(self, text: str) -> np.ndarray:
        return self.render_with_report(text).image

    def render_batch(self, texts: Sequence[str], workers: int | None = None) -> np.ndarray:
        """N x H x W x 3 uint8, in input order; spreads large batches over all cores."""
        texts = list(texts)
        if workers is None:
            workers = min(os.cpu_count() or 1, max(1, len(texts) // _MIN_TEXTS_PER_WORKER))
        if workers <= 1:
            images = [self.render(t) for t in texts]
        else:
            chunk = -(-len(texts) // (workers * 4))
            with ProcessPoolExecutor(workers) as pool:
                images = list(pool.map(self.render, texts, chunksize=chunk))
        h, w = self.image_size
        return np.stack(images) if images else np.zeros((0, h, w, 3), np.uint8)
