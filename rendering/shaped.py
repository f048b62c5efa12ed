"""The `shaped` renderer: HarfBuzz shaping, Unicode bidi and a pinned Noto stack, one text line per patch row.

Pipeline: normalise -> font and bidi level per code point (lookup tables) -> runs -> HarfBuzz per run ->
greedy line breaking at word boundaries (between grapheme clusters in scripts without spaces) -> visual
order per line (UAX #9 L2) -> one vectorised composite of cached glyph bitmaps for the whole canvas.
Nothing loops in Python per pixel, and per glyph only the HarfBuzz results are read.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from dataclasses import dataclass

import numpy as np
import regex
import uharfbuzz as hb
from PIL import Image

from rendering import chartables
from rendering.base import Renderer, Rendering, RenderReport
from rendering.fontstack import FontStack
from rendering.glyphs import GlyphAtlas
from rendering.text import bidi_levels, graphemes, normalize, reorder_runs

DEFAULTS = {
    "style": "shaped",
    "image_size": 224,
    "patch_size": 16,
    "font_size": 11,  # pixels per em; with the baseline below, Latin fits a 16 px row
    "baseline": 12,  # pixels from the top of a row
    "text_brightness": 0,
    "background_brightness": 255,
    # Longer input cannot fit any canvas; cutting first bounds time and memory for any input.
    "max_chars": 2048,
}
_CJK = regex.compile(r"[\p{Han}\p{Hangul}\p{Hiragana}\p{Katakana}]")
_TSHEG = 0x0F0B
_TIBETAN = regex.compile("\u0f0b")
_MARGIN = 32  # pixels composited beyond each side of the canvas, for ink that overhangs it, then cut


@dataclass
class _Shaped:
    """All glyphs of a text, runs concatenated in logical order, each run in HarfBuzz's (visual) order."""

    gid: np.ndarray
    cluster: np.ndarray  # code point offset of the glyph's cluster
    advance: np.ndarray  # 26.6 pixels
    x_offset: np.ndarray
    y_offset: np.ndarray
    font: np.ndarray
    run: np.ndarray  # run index of each glyph
    run_levels: list[int]
    text_length: int  # code points


@dataclass
class Layout:
    """A text laid out: lines as code point ranges of `text`, glyphs in visual order with their line."""

    text: str  # normalised and cut
    lines: list[tuple[int, int]]
    shaped: _Shaped | None
    base_level: int  # 1 for a right-to-left paragraph
    order: np.ndarray  # indices into `shaped`, line after line, left to right
    line_of: np.ndarray
    report: RenderReport

    def glyphs(self, line: int) -> list[tuple[int, int, int]]:
        """(cluster, font, glyph id) of one line's glyphs, left to right."""
        mine = self.order[self.line_of == line]
        s = self.shaped
        return list(zip(s.cluster[mine].tolist(), s.font[mine].tolist(), s.gid[mine].tolist(), strict=True))


class ShapedRenderer(Renderer):
    style = "shaped"

    def __init__(self, config: dict | None = None, stack: FontStack | None = None):
        super().__init__({**DEFAULTS, **(config or {})})
        self._stack = stack  # None: the pinned stack of fonts.toml
        self._atlas: GlyphAtlas | None = None

    def __getstate__(self) -> dict:
        # Workers rebuild fonts and caches themselves; HarfBuzz and FreeType objects do not pickle.
        return {"config": self.config, "_stack": None, "_atlas": None}

    @property
    def atlas(self) -> GlyphAtlas:
        if self._atlas is None:
            self._atlas = GlyphAtlas(self.config["font_size"], self.image_size[1] + 2 * _MARGIN, self._stack)
        return self._atlas

    def render(self, text: str, language: str | None = None) -> np.ndarray:
        return self.render_with_report(text, language).image

    def layout(self, text: str, language: str | None = None) -> Layout:
        """Where every glyph goes, without drawing: the renderer's decisions, open to inspection and tests."""
        report = RenderReport()
        text, report.replaced = normalize(text)
        text = self._cut(text, report)
        if not text:
            return Layout(text, [], None, 0, np.zeros(0, np.int64), np.zeros(0, np.int64), report)
        cps = chartables.codepoints(text)
        shaped, base_level = self._shape(text, cps, language, report)
        lines = self._break_lines(text, cps, shaped, report)
        report.lines = report.rows_used = len(lines)
        order, line_of = self._visual_order(lines, shaped)
        return Layout(text, lines, shaped, base_level, order, line_of, report)

    def render_with_report(self, text: str, language: str | None = None) -> Rendering:
        """Draw `text`; `language` (BCP 47, e.g. "ja") picks the CJK face where the text alone cannot."""
        layout = self.layout(text, language)
        image = np.full((*self.image_size, 3), self.config["background_brightness"], np.uint8)
        if layout.lines:
            # Only the rows that hold text are composited; the rest stays background.
            darkness = self._draw(layout)[:, _MARGIN:-_MARGIN]
            # Darkness is never negative, so clipping the table index is capping it at 255.
            gray = self._shades.take(darkness.astype(np.int32), mode="clip")
            for channel in range(3):  # three plain copies are far quicker than one broadcast
                image[: len(gray), :, channel] = gray
        return Rendering(image, layout.report)

    def _cut(self, text: str, report: RenderReport) -> str:
        limit = self.config["max_chars"]
        if len(text) <= limit:
            return text
        kept = "".join(graphemes(text[: limit + 1])[:-1])  # the last cluster may be cut in two
        report.truncated = text[len(kept) :]
        return kept

    # -- shaping --------------------------------------------------------------------------------

    def _shape(
        self, text: str, cps: np.ndarray, language: str | None, report: RenderReport
    ) -> tuple[_Shaped, int]:
        stack = self.atlas.stack
        if language is None and _CJK.search(text):
            language = stack.guess_language(text)
        fonts, missing = stack.assign(text, cps, language)
        report.missing = [text[i] for i in missing]
        base_level, levels = bidi_levels(text)
        if fonts.count(fonts[0]) == len(fonts) and levels.count(levels[0]) == len(levels):
            bounds = [0, len(text)]  # one run: the common case
        else:
            change = np.flatnonzero((np.diff(fonts) != 0) | (np.diff(levels) != 0)) + 1
            bounds = [0, *change.tolist(), len(text)]
        cp_list = cps.tolist()
        gids, clusters, positions, run_of, run_levels, run_fonts = [], [], [], [], [], []
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            level, font = levels[start], fonts[start]
            buf = hb.Buffer()
            buf.add_codepoints(cp_list, start, end - start)  # the whole text is context for joining
            buf.direction = "rtl" if level % 2 else "ltr"
            buf.guess_segment_properties()
            if language:
                buf.language = language
            hb.shape(self.atlas.hb_font(font), buf)
            infos = buf.glyph_infos
            gids += [g.codepoint for g in infos]
            clusters += [g.cluster for g in infos]
            positions += [p.position for p in buf.glyph_positions]
            run_of.append(len(infos))
            run_levels.append(level)
            run_fonts.append(font)
        # HarfBuzz positions are (x_offset, y_offset, x_advance, y_advance) in 26.6 pixels.
        xy = np.fromiter(itertools.chain.from_iterable(positions), np.int64, 4 * len(positions)).reshape(
            -1, 4
        )
        runs = np.arange(len(run_of)).repeat(run_of)
        shaped = _Shaped(
            gid=np.array(gids, np.int64),
            cluster=np.array(clusters, np.int64),
            advance=xy[:, 2],
            x_offset=xy[:, 0],
            y_offset=xy[:, 1],
            font=np.array(run_fonts)[runs],
            run=runs,
            run_levels=run_levels,
            text_length=len(text),
        )
        return shaped, base_level

    # -- line breaking --------------------------------------------------------------------------

    def _break_points(self, text: str, cps: np.ndarray) -> np.ndarray:
        """Code point offsets where a line may end (UAX #14 style): after a space or a Tibetan tsheg, and
        between grapheme clusters of scripts written without spaces, never before closing punctuation."""
        before, after = cps[:-1], cps[1:]
        ok = (before == 32) & (after != 32)
        if _TIBETAN.search(text):
            ok |= before == _TSHEG
        if chartables.NO_SPACE_PATTERN.search(text):
            no_space = chartables.no_space_script()
            between = (
                (no_space[before] | no_space[after]) & (after != 32) & ~chartables.no_break_before()[after]
            )
            ok |= between & np.isin(np.arange(1, len(cps)), self._cluster_bounds(text))
        return np.append(np.flatnonzero(ok) + 1, len(cps))

    @staticmethod
    def _cluster_bounds(text: str) -> np.ndarray:
        return np.cumsum([len(c) for c in graphemes(text)])

    def _break_lines(
        self, text: str, cps: np.ndarray, shaped: _Shaped, report: RenderReport
    ) -> list[tuple[int, int]]:
        """Greedy: a line takes the most words that fit; a word wider than the canvas breaks inside."""
        height, width = self.image_size
        limit = width * 64
        if height >= self.patch_size and shaped.advance.min() >= 0 and shaped.advance.sum() <= limit:
            return [(0, len(cps))]  # all of it fits the first line (the pen only moves right)
        pen = np.zeros(len(cps) + 1, np.int64)  # pen[i]: x before code point i, 26.6
        np.add.at(pen, shaped.cluster + 1, shaped.advance)
        pen = np.cumsum(pen)
        ends = self._break_points(text, cps)
        ink_ends = ends - (cps[ends - 1] == 32)  # a trailing space takes no room
        # Widths grow with the end, so for each line the ends that fit are a prefix: two bisections.
        ends_list, ink_list, ink_pen, pen_list = (
            ends.tolist(),
            ink_ends.tolist(),
            pen[ink_ends].tolist(),
            pen.tolist(),
        )
        lines: list[tuple[int, int]] = []
        start = 0
        while start < len(cps) and len(lines) < height // self.patch_size:
            first = bisect.bisect_right(ends_list, start)
            last = bisect.bisect_right(ink_pen, pen_list[start] + limit, lo=first) - 1
            if last >= first:
                end, ink_end = ends_list[last], ink_list[last]
            else:
                bounds = self._cluster_bounds(text)
                inside = bounds[bounds > start]
                fitting = inside[pen[inside] - pen[start] <= limit]
                end = ink_end = int(fitting[-1]) if len(fitting) else int(inside[0])
            lines.append((start, ink_end))
            start = end
        if start < len(cps):
            report.truncated = text[start:] + report.truncated
        return lines

    # -- drawing --------------------------------------------------------------------------------

    def _visual_order(self, lines: list[tuple[int, int]], shaped: _Shaped) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the drawn glyphs in visual order, line after line, and the line of each."""
        if len(lines) == 1 and lines[0] == (0, shaped.text_length):
            idx, line_of = np.arange(len(shaped.gid)), np.zeros(len(shaped.gid), np.int64)
        else:
            starts = np.asarray([start for start, _ in lines])
            line_ends = np.asarray([end for _, end in lines])
            line_of = np.searchsorted(starts, shaped.cluster, side="right") - 1
            idx = np.flatnonzero(shaped.cluster < line_ends[line_of])
        levels = set(shaped.run_levels)
        if levels == {0} or (len(lines) == 1 and len(shaped.run_levels) == 1):
            # HarfBuzz gives each run in visual order, and left-to-right runs follow one another.
            return idx, line_of[idx]
        if levels == {1}:
            # Right to left throughout: runs in reverse order on each line, HarfBuzz's order inside a run.
            idx = idx[np.lexsort((idx, -shaped.run[idx], line_of[idx]))]
            return idx, line_of[idx]
        order = []
        for row in range(len(lines)):
            mine = idx[line_of[idx] == row]
            runs = shaped.run[mine]
            splits = np.flatnonzero(np.diff(runs)) + 1
            if len(splits):
                pieces = np.split(mine, splits)
                levels = [shaped.run_levels[int(runs[0])]] + [shaped.run_levels[int(runs[s])] for s in splits]
                mine = np.concatenate([pieces[i] for i in reorder_runs(levels)])
            order.append(mine)
        idx = np.concatenate(order)
        return idx, line_of[idx]

    def _draw(self, layout: Layout) -> np.ndarray:
        """Darkness (0 = background) of the rows that hold text, `_MARGIN` wider than the canvas each side."""
        _, width = self.image_size
        patch = self.patch_size
        lines, shaped, base_level = layout.lines, layout.shaped, layout.base_level
        order, line_of = layout.order, layout.line_of
        shape = (len(lines) * patch, width + 2 * _MARGIN)
        if not len(order):
            return np.zeros(shape)
        advance = shaped.advance[order]
        pen = advance.cumsum() - advance
        line_starts = np.searchsorted(line_of, np.arange(len(lines)))
        if len(lines) > 1:
            pen -= pen[line_starts][line_of]
        if base_level % 2:  # right-aligned, as right-to-left readers expect
            pen += (width * 64 - np.add.reduceat(advance, line_starts))[line_of]
        left = pen + shaped.x_offset[order]
        glyphs = self.atlas.lookup(
            shaped.font[order], shaped.gid[order], left % 64 * self.atlas.subpixel // 64
        )
        lift = (shaped.y_offset[order] + 32) // 64
        x = left // 64 + _MARGIN
        # Keep each line's ink inside its patch row: shift the baseline, or shrink a stack too tall for it.
        top = np.minimum.reduceat(glyphs.tops - lift, line_starts).tolist()
        bottom = np.maximum.reduceat(glyphs.bottoms - lift, line_starts).tolist()
        baselines, too_tall = [], []
        for row, (ink_top, ink_bottom) in enumerate(zip(top, bottom, strict=True)):
            baseline = row * patch + self.config["baseline"]
            baseline += max(0, row * patch - (baseline + ink_top))
            baselines.append(baseline - max(0, baseline + ink_bottom - (row + 1) * patch))
            too_tall.append(ink_bottom - ink_top > patch and ink_bottom > ink_top)
        y = np.array(baselines)[line_of] - lift
        if not any(too_tall):
            return self.atlas.composite(glyphs, x, y, shape)
        normal = ~np.take(too_tall, line_of)
        darkness = self.atlas.composite(glyphs.select(normal), x[normal], y[normal], shape)
        for row in np.flatnonzero(too_tall).tolist():
            mine = line_of == row
            line_shape = (bottom[row] - top[row], shape[1])
            line = self.atlas.composite(glyphs.select(mine), x[mine], -top[row] - lift[mine], line_shape)
            self._paste_scaled(line[:, _MARGIN:-_MARGIN], row, base_level, darkness)
        return darkness

    def _paste_scaled(self, line: np.ndarray, row: int, base_level: int, darkness: np.ndarray) -> None:
        patch, width = self.patch_size, self.image_size[1]
        scale = patch / line.shape[0]
        image = Image.fromarray(np.clip(line, 0, 255).astype(np.uint8))
        small = np.asarray(
            image.resize((max(1, round(width * scale)), patch), Image.Resampling.BOX), np.float32
        )
        x0 = _MARGIN + (width - small.shape[1] if base_level % 2 else 0)
        darkness[row * patch : (row + 1) * patch, x0 : x0 + small.shape[1]] += small

    @functools.cached_property
    def _shades(self) -> np.ndarray:
        """Gray level for each darkness 0..255, between the background and the ink brightness."""
        ink, background = self.config["text_brightness"], self.config["background_brightness"]
        return np.rint(background + (ink - background) * np.arange(256) / 255).astype(np.uint8)
