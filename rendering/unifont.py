"""The `unifont` style: pixel for pixel what big_vision's `render_unifont` op draws for CLIPPO.

The op, with CLIPPO's settings, is:
1. lower-case A-Z only, cut the text to its first `max_chars` code points;
2. look up each code point's 16 x 16 Unifont glyph (blank when the font lacks it), no shaping, no
   bidi: one cell per code point, in logical order, control characters included;
3. trim each glyph to the columns [start, end) with start = max(first_ink - spacing, 0) and
   end = max(last_ink + spacing, start + min_width) capped at 16;
4. wrap by character: with trimmed widths w and div = width - max(w), glyph i goes to row
   floor((w_1 + ... + w_i) / div), rows left-aligned and 16 px tall; rows below the canvas are dropped;
5. ink gets `text_brightness`, the rest `background_brightness`, in three equal channels.
Glyph bitmaps come from `rendering.unifont_font`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ground.errors import InputError
from rendering import kernels
from rendering.base import Renderer, Rendering, RenderReport
from rendering.unifont_font import BMP_END, CELL, source_files, trimmed

DEFAULTS = {
    "image_size": 224,
    "patch_size": 16,
    "font_size": 16,
    "lower": True,
    "text_brightness": 0,
    "background_brightness": 127,
    "max_chars": 768,
    "spacing": 1,
    "min_width": 4,
}
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _int_option(config: dict, key: str, low: int, high: int | None = None) -> int:
    value = config.get(key, DEFAULTS[key])
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        raise InputError(f"unifont renderer option {key}={value!r}: expected {bound}")
    return value


class UnifontRenderer(Renderer):
    """Renders text as big_vision's `render_unifont` does (GNU Unifont, 16 px, character wrapping).

    Config keys (all optional): image_size (224, an int or [height, width]), patch_size (16),
    font_size (16 only), lower (True), text_brightness (0), background_brightness (127),
    max_chars (768; 0 or None keeps the whole text), spacing (1), min_width (4).
    """

    style = "unifont"

    def __init__(self, config: dict):
        super().__init__({"style": self.style, **config})
        cfg = self.config
        if cfg.get("font_size", 16) != CELL:
            raise InputError(f"unifont renderer option font_size={cfg['font_size']!r}: only 16 is supported")
        size = cfg.get("image_size", DEFAULTS["image_size"])
        pair = (
            [size, size] if isinstance(size, int) else list(size) if isinstance(size, (list, tuple)) else []
        )
        if not (
            len(pair) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
            and pair[0] > 0
            and pair[1] > CELL
        ):
            raise InputError(
                f"unifont renderer option image_size={size!r}: "
                f"expected an integer or [height, width], with a width above {CELL} px"
            )
        self._height, self._width = pair
        self._patch = _int_option(cfg, "patch_size", 1)
        self._text_value = _int_option(cfg, "text_brightness", 0, 255)
        self._background = np.uint8(_int_option(cfg, "background_brightness", 0, 255))
        self._spacing = _int_option(cfg, "spacing", 0, CELL)
        self._min_width = _int_option(cfg, "min_width", 0, CELL)
        max_chars = cfg.get("max_chars", DEFAULTS["max_chars"])
        self._max_chars = _int_option(cfg, "max_chars", 0) if max_chars is not None else 0
        self._lower = cfg.get("lower", DEFAULTS["lower"])
        if not isinstance(self._lower, bool):
            raise InputError(f"unifont renderer option lower={self._lower!r}: expected true or false")

    def source_files(self) -> list[Path]:
        return source_files()

    def render_with_report(self, text: str) -> Rendering:
        images, reports = self.render_many([text])
        return Rendering(images[0], reports[0])

    def render_many(self, texts: Sequence[str]) -> tuple[np.ndarray, list[RenderReport]]:
        """All texts drawn by one compiled call into one array, its background set by one memset."""
        shown = []
        for text in texts:
            if not isinstance(text, str):
                raise InputError(f"text to render must be a str, not {type(text).__name__}")
            shown.append(text[: self._max_chars] if self._max_chars else text)
        joined = "".join(shown)
        if self._lower:
            joined = joined.translate(_ASCII_LOWER)
        cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), np.uint32)
        text_start = np.zeros(len(texts) + 1, np.int64)
        np.cumsum([len(s) for s in shown], out=text_start[1:])
        glyphs, trim = trimmed(bool(len(cps)) and int(cps.max()) >= BMP_END, self._spacing, self._min_width)
        images = np.full((len(texts), self._height, self._width * 3), self._background, np.uint8)
        drawn, lines, flags = (np.zeros(len(texts), np.int64) for _ in range(3))
        kernels.unifont_draw(
            cps, text_start, kernels.UnifontGlyphs(glyphs.index, trim.width, trim.strip_start, glyphs.ink),
            self._text_value, images, drawn, lines, flags,
        )  # fmt: skip
        reports = []
        for t, text in enumerate(texts):
            report = RenderReport(lines=int(lines[t]))
            mine = cps[text_start[t] : text_start[t + 1]]
            if flags[t] & 2:
                surrogate = (mine >= kernels.SURROGATES[0]) & (mine <= kernels.SURROGATES[1])
                report.replaced = [shown[t][i] for i in np.flatnonzero(surrogate)]
                mine = np.where(surrogate, kernels.REPLACEMENT, mine)
            if flags[t] & 1:
                shown_cps = mine[: drawn[t]]
                absent = shown_cps[glyphs.index[shown_cps] == 0]
                report.missing = list(dict.fromkeys(chr(cp) for cp in absent))
            if drawn[t] < len(text):
                report.truncated = text[drawn[t] :]
            report.rows_used = min(-(-report.lines * CELL // self._patch), -(-self._height // self._patch))
            reports.append(report)
        return images.reshape(len(texts), self._height, self._width, 3), reports
