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

import numpy as np

from pixglot.errors import InputError
from rendering.base import Renderer, Rendering, RenderReport
from rendering.unifont_font import BMP_END, CELL, trimmed

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
_SURROGATES = (0xD800, 0xDFFF)
_REPLACEMENT = 0xFFFD


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
        self._ink_step = np.uint8((self._text_value - int(self._background)) % 256)
        self._spacing = _int_option(cfg, "spacing", 0, CELL)
        self._min_width = _int_option(cfg, "min_width", 0, CELL)
        max_chars = cfg.get("max_chars", DEFAULTS["max_chars"])
        self._max_chars = _int_option(cfg, "max_chars", 0) if max_chars is not None else 0
        self._lower = cfg.get("lower", DEFAULTS["lower"])
        if not isinstance(self._lower, bool):
            raise InputError(f"unifont renderer option lower={self._lower!r}: expected true or false")

    def render_with_report(self, text: str) -> Rendering:
        if not isinstance(text, str):
            raise InputError(f"text to render must be a str, not {type(text).__name__}")
        height, width = self._height, self._width
        report = RenderReport()
        shown = text[: self._max_chars] if self._max_chars else text
        if self._lower:
            shown = shown.translate(_ASCII_LOWER)
        cps = np.frombuffer(shown.encode("utf-32-le", "surrogatepass"), np.uint32)
        image = np.full((height, width * 3), self._background, np.uint8)  # RGB rows, channels interleaved
        drawn = 0
        if len(cps):
            top = int(cps.max())
            if top >= _SURROGATES[0]:
                surrogate = (cps >= _SURROGATES[0]) & (cps <= _SURROGATES[1])
                if surrogate.any():
                    # A lone surrogate is not a character; a UTF-8 decoder would give U+FFFD for it.
                    report.replaced = [shown[i] for i in np.flatnonzero(surrogate)]
                    cps = np.where(surrogate, _REPLACEMENT, cps)
            glyphs, trim = trimmed(top >= BMP_END, self._spacing, self._min_width)
            glyph = glyphs.index[cps]
            widths = trim.width[glyph]
            ends = np.cumsum(widths)
            row = ends // (width - int(widths.max()))
            drawn = int(np.searchsorted(row, -(-height // CELL)))  # glyphs on rows that reach the canvas
            glyph, widths, ends, row = glyph[:drawn], widths[:drawn], ends[:drawn], row[:drawn]
            if not glyph.all():
                report.missing = list(dict.fromkeys(chr(cp) for cp in cps[:drawn][glyph == 0]))
            report.lines = int(row[-1]) + 1
            self._draw(image, glyphs.ink, trim.strip_start[glyph], widths, ends, row, report.lines)
        if drawn < len(text):
            report.truncated = text[drawn:]
        report.rows_used = min(-(-report.lines * CELL // self._patch), -(-height // self._patch))
        return Rendering(image.reshape(height, width, 3), report)

    def _draw(
        self,
        image: np.ndarray,
        strip: np.ndarray,
        strip_starts: np.ndarray,
        widths: np.ndarray,
        ends: np.ndarray,
        row: np.ndarray,
        lines: int,
    ) -> None:
        """Write the trimmed glyphs, row by row from x = 0, into `image` (height x width*3 RGB bytes)."""
        total = int(ends[-1])
        if total == 0:
            return
        begins = ends - widths  # of each glyph in the running sum of widths, i.e. in one endless line
        # Column i of the endless line is strip column (strip_start + i - begin) of its glyph.
        source = np.arange(total) + np.repeat(strip_starts - begins, widths)
        ink = np.take(strip, source, axis=1)  # (16, total), 0 or 1
        # The op's uint8 arithmetic: 0 -> background, 1 -> background + (text - background) = text.
        values = ink * self._ink_step + self._background
        rgb = np.repeat(values, 3, axis=1)
        cuts = [0, *(3 * begins[np.searchsorted(row, np.arange(1, lines))]).tolist(), 3 * total]
        for line in range(lines):
            band = image[line * CELL : (line + 1) * CELL]  # the last one may be cut by the canvas
            band[:, : cuts[line + 1] - cuts[line]] = rgb[: len(band), cuts[line] : cuts[line + 1]]
