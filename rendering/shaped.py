"""The `shaped` renderer: HarfBuzz shaping, Unicode bidi and a pinned Noto stack, one text line per patch row.

Pipeline, for a batch of texts. Per text: normalise -> font and bidi level per code point (lookup
tables) -> runs -> HarfBuzz per run. Then for the whole batch at once, in compiled loops
(rendering.kernels): greedy line breaking at word boundaries (between grapheme clusters in scripts
without spaces) -> each line's glyphs in visual order (UAX #9 L2; Python reorders the lines that
mix directions) -> placement -> cached glyph bitmaps composited and shaded. Python works per text
and per run, never per glyph or pixel (HarfBuzz's results come back as arrays, rendering.harfbuzz).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rendering import chartables, kernels
from rendering.base import Renderer, Rendering, RenderReport
from rendering.fontstack import FontStack
from rendering.glyphs import GlyphAtlas
from rendering.harfbuzz import Runs, Shaper
from rendering.text import bidi_levels, graphemes, normalize_many, reorder_runs

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
# Texts laid out and drawn together: enough to share the per-call costs, few enough for their
# buffers to stay in the CPU's caches.
_GROUP = 32
_MARGIN = 32  # pixels composited beyond each side of the canvas, for ink that overhangs it, then cut
_NO_TABLES = kernels.BreakTables(np.zeros(0, bool), np.zeros(0, bool))


@dataclass
class _Shaped:
    """Glyphs of texts, runs concatenated in logical order, each run in HarfBuzz's (visual) order."""

    gid: np.ndarray
    cluster: np.ndarray  # code point offset of the glyph's cluster in its text
    advance: np.ndarray  # 26.6 pixels
    x_offset: np.ndarray
    y_offset: np.ndarray
    font: np.ndarray
    run: np.ndarray  # run index of each glyph
    run_levels: np.ndarray


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


@dataclass
class _Batch:
    """Texts laid out together: their glyphs end to end, and their lines numbered across the batch."""

    texts: list[str]  # normalised and cut
    reports: list[RenderReport]
    base_levels: list[int]
    shaped: _Shaped
    glyph_start: np.ndarray  # text t's glyphs are shaped[glyph_start[t]:glyph_start[t + 1]]
    run_start: np.ndarray  # and its runs run_start[t]:run_start[t + 1]
    lines: np.ndarray  # (texts, rows, 2): text t's lines are lines[t, :line_count[t]]
    line_count: np.ndarray
    line_start: np.ndarray  # text t's first line in the batch's numbering
    order: np.ndarray  # glyphs drawn, text after text, line after line, left to right
    line_of: np.ndarray  # their line in the batch's numbering

    def layout(self, t: int) -> Layout:
        """Text t's layout, in its own glyph and line numbering."""
        lines = list(map(tuple, self.lines[t, : self.line_count[t]].tolist()))
        if not self.texts[t]:
            return Layout("", lines, None, 0, np.zeros(0, np.int64), np.zeros(0, np.int64), self.reports[t])
        g0, g1 = self.glyph_start[t], self.glyph_start[t + 1]
        r0, r1 = self.run_start[t], self.run_start[t + 1]
        s = self.shaped
        shaped = _Shaped(
            *(column[g0:g1] for column in (s.gid, s.cluster, s.advance, s.x_offset, s.y_offset, s.font)),
            run=s.run[g0:g1] - r0,
            run_levels=s.run_levels[r0:r1],
        )
        mine = (self.order >= g0) & (self.order < g1)
        order, line_of = self.order[mine] - g0, self.line_of[mine] - self.line_start[t]
        return Layout(self.texts[t], lines, shaped, self.base_levels[t], order, line_of, self.reports[t])


class ShapedRenderer(Renderer):
    style = "shaped"

    def __init__(self, config: dict | None = None, stack: FontStack | None = None):
        super().__init__({**DEFAULTS, **(config or {})})
        self._stack = stack  # None: the pinned stack of fonts.toml
        self._atlas: GlyphAtlas | None = None
        self._shaper: Shaper | None = None

    def __getstate__(self) -> dict:
        # Workers rebuild fonts and caches themselves; HarfBuzz and FreeType objects do not pickle.
        return {"config": self.config, "_stack": None, "_atlas": None, "_shaper": None}

    @property
    def shaper(self) -> Shaper:
        if self._shaper is None:
            self._shaper = Shaper(self.atlas.stack, self.config["font_size"])
        return self._shaper

    @property
    def atlas(self) -> GlyphAtlas:
        if self._atlas is None:
            self._atlas = GlyphAtlas(self.config["font_size"], self.image_size[1] + 2 * _MARGIN, self._stack)
        return self._atlas

    def source_files(self) -> list[Path]:
        # The stack this renderer draws with (its atlas's), whatever the default stack is by now.
        return list(dict.fromkeys(font.path for font in self.atlas.stack.fonts))

    def render(self, text: str, language: str | None = None) -> np.ndarray:
        return self.render_with_report(text, language).image

    def render_with_report(self, text: str, language: str | None = None) -> Rendering:
        """Draw `text`; `language` (BCP 47, e.g. "ja") picks the CJK face where the text alone cannot."""
        images, reports = self.render_many([text], [language])
        return Rendering(images[0], reports[0])

    def layout(self, text: str, language: str | None = None) -> Layout:
        """Where every glyph goes, without drawing: the renderer's decisions, open to inspection and tests."""
        return self._lay_out([text], [language]).layout(0)

    def render_many(
        self, texts: Sequence[str], languages: Sequence[str | None] | None = None
    ) -> tuple[np.ndarray, list[RenderReport]]:
        """Draw many texts at once: each costs its shaping, while placing and compositing the glyphs
        of all of them takes a few compiled calls. Returns N x H x W x 3 images and the reports."""
        languages = languages or [None] * len(texts)
        images = np.empty((len(texts), *self.image_size, 3), np.uint8)
        reports: list[RenderReport] = []
        for start in range(0, len(texts), _GROUP):
            group = slice(start, start + _GROUP)
            batch = self._lay_out(texts[group], languages[group])
            darkness, columns = self._draw(batch)
            # The background is set by one memset per group, just before the shading writes the ink:
            # one fill of the whole batch up front would leave its first canvases out of cache by then.
            images[group] = self._shades[0]
            rows = (batch.line_start, batch.line_count, columns, self.patch_size)
            kernels.shade(darkness, *rows, _MARGIN, self._shades, images[group])
            reports += batch.reports
        return images, reports

    def _cut(self, text: str, report: RenderReport) -> str:
        limit = self.config["max_chars"]
        if len(text) <= limit:
            return text
        kept = "".join(graphemes(text[: limit + 1])[:-1])  # the last cluster may be cut in two
        report.truncated = text[len(kept) :]
        return kept

    def _lay_out(self, texts: Sequence[str], languages: Sequence[str | None]) -> _Batch:
        reports = [RenderReport() for _ in texts]
        cut = []
        for (text, replaced), report in zip(normalize_many(texts), reports, strict=True):
            report.replaced = replaced
            cut.append(self._cut(text, report))
        # The texts' code points end to end; text t's are cps[starts[t]:starts[t + 1]].
        cps = chartables.codepoints("".join(cut))
        starts = np.array([0, *itertools.accumulate(map(len, cut))], np.int64)
        shaped, glyph_start, run_start, base_levels, kinds = self._shape(cut, cps, starts, languages, reports)
        no_space = kinds & chartables.NO_SPACE != 0
        lines, line_count = self._break_lines(cut, cps, starts, shaped, glyph_start, no_space, reports)
        line_start = np.array([0, *itertools.accumulate(line_count.tolist())], np.int64)
        order, line_of = self._visual_order(shaped, glyph_start, run_start, lines, line_count, line_start)
        return _Batch(
            cut,
            reports,
            base_levels,
            shaped,
            glyph_start,
            run_start,
            lines,
            line_count,
            line_start,
            order,
            line_of,
        )

    # -- shaping --------------------------------------------------------------------------------

    def _shape(
        self,
        texts: list[str],
        cps: np.ndarray,
        starts: np.ndarray,
        languages: Sequence[str | None],
        reports: list[RenderReport],
    ) -> tuple[_Shaped, np.ndarray, np.ndarray, list[int], np.ndarray]:
        """All texts' glyphs end to end, where each text's glyphs and runs start, and each text's
        paragraph level and bits of `chartables.class_table`."""
        stack = self.atlas.stack
        kinds, first, covered = stack.text_facts(cps, starts)
        # Python lists, not array expressions: a batch is a few dozen texts, and an array call costs
        # as much as a pass over them.
        kinds_of = kinds.tolist()
        languages = [
            language or chartables.guessed_language(k)
            for language, k in zip(languages, kinds_of, strict=True)
        ]
        tags = list(dict.fromkeys(languages))  # harfbuzz.Runs.languages
        language_of = np.array(
            list(map({tag: i for i, tag in enumerate(tags)}.__getitem__, languages)), np.int64
        )
        single = stack.single_fonts(first, covered, kinds, language_of, tags)
        # Texts in one font and left to right throughout, nearly all of them, are one run each, made
        # in a compiled loop; the others are split into runs of one font and level here.
        base_levels = [0] * len(texts)
        split_count = [0] * len(texts)
        split: list[tuple[int, ...]] = []  # spans (harfbuzz.Runs.spans) and a level, run after run
        for t, (text, font, k) in enumerate(zip(texts, single.tolist(), kinds_of, strict=True)):
            if (font >= 0 and not k & chartables.MAYBE_RTL) or not text:
                continue
            offset, length = int(starts[t]), len(text)
            if font >= 0:
                fonts = np.full(length, font)
            else:
                fonts, missing = stack.assign(cps[offset : offset + length], languages[t])
                reports[t].missing = [text[i] for i in np.flatnonzero(missing).tolist()]
            base_levels[t], levels = bidi_levels(text) if k & chartables.MAYBE_RTL else (0, [0] * length)
            change = np.flatnonzero((np.diff(fonts) != 0) | (np.diff(levels) != 0)) + 1
            bounds = [0, *change.tolist(), length]
            split += [
                (offset, length, start, end, levels[start] % 2, int(fonts[start]), levels[start])
                for start, end in zip(bounds[:-1], bounds[1:], strict=True)
            ]
            split_count[t] = len(bounds) - 1
        split_runs = np.array(split, np.int64).reshape(-1, 7)
        runs, run_levels, run_start = kernels.runs_of_texts(
            starts, single, language_of, np.array(split_count, np.int64), split_runs
        )
        glyphs = self.shaper.shape(Runs(cps, runs, tags))
        shaped = _Shaped(*glyphs[:-1], run_levels=run_levels)
        glyph_start = glyphs.run_start[run_start]
        return shaped, glyph_start, run_start, base_levels, kinds

    # -- line breaking --------------------------------------------------------------------------

    @staticmethod
    def _cluster_bounds(text: str) -> np.ndarray:
        return np.cumsum([len(c) for c in graphemes(text)])

    def _break_lines(
        self,
        texts: list[str],
        cps: np.ndarray,
        cp_start: np.ndarray,
        shaped: _Shaped,
        glyph_start: np.ndarray,
        no_space: np.ndarray,
        reports: list[RenderReport],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Greedy: a line takes the most words that fit; a word wider than the canvas breaks inside
        (at word boundaries, UAX #14 style; between grapheme clusters in scripts without spaces, in
        the texts where `no_space` is set). Returns the lines (texts x rows x 2 code point offsets)
        and how many each text has."""
        height, width = self.image_size
        tables = (
            kernels.BreakTables(chartables.no_space_script(), chartables.no_break_before())
            if any(no_space.tolist())
            else _NO_TABLES
        )
        batch = kernels.TextBatch(cps, cp_start, shaped.cluster, shaped.advance, glyph_start)
        rows = height // self.patch_size
        lines, line_count, rest = kernels.break_batch(batch, width * 64, no_space, tables, rows)
        counts, ends = line_count.tolist(), rest.tolist()
        for t, (text, report) in enumerate(zip(texts, reports, strict=True)):
            if counts[t] == kernels.NEED_CLUSTERS:
                # Grapheme boundaries cost a regex pass: found only for the texts that turn out to need them.
                g0, g1 = glyph_start[t], glyph_start[t + 1]
                counts[t], ends[t] = kernels.break_lines(
                    cps[cp_start[t] : cp_start[t + 1]],
                    shaped.cluster[g0:g1],
                    shaped.advance[g0:g1],
                    width * 64,
                    no_space[t],
                    tables,
                    self._cluster_bounds(text),
                    lines[t],
                )
                line_count[t] = counts[t]
            if ends[t] < len(text):
                report.truncated = text[ends[t] :] + report.truncated
            report.lines = report.rows_used = counts[t]
        return lines, line_count

    # -- drawing --------------------------------------------------------------------------------

    def _visual_order(
        self,
        shaped: _Shaped,
        glyph_start: np.ndarray,
        run_start: np.ndarray,
        lines: np.ndarray,
        line_count: np.ndarray,
        line_start: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The glyphs drawn, in visual order line after line, and the line of each (batch numbering)."""
        idx, line_of, text_start = kernels.glyphs_on_lines(
            shaped.cluster, glyph_start, lines, line_count, line_start
        )
        # HarfBuzz gives each run in visual order, and left-to-right runs follow one another: only
        # texts with right-to-left runs, on lines that hold more than one run, are reordered.
        run_levels, bounds = shaped.run_levels.tolist(), run_start.tolist()
        for t, lines_of_text in enumerate(line_count.tolist()):
            levels = set(run_levels[bounds[t] : bounds[t + 1]])
            if levels <= {0} or (lines_of_text == 1 and bounds[t + 1] - bounds[t] == 1):
                continue
            span = slice(text_start[t], text_start[t + 1])
            mine, rows = idx[span], line_of[span]
            if levels == {1}:
                # Right to left throughout: runs in reverse order on each line, HarfBuzz's order inside a run.
                visual = np.lexsort((mine, -shaped.run[mine], rows))
            else:
                runs = shaped.run[mine]
                visual = np.concatenate(
                    [
                        self._reorder_runs(shaped.run_levels, runs, np.flatnonzero(rows == row))
                        for row in np.unique(rows)
                    ]
                )
            idx[span], line_of[span] = mine[visual], rows[visual]
        return idx, line_of

    @staticmethod
    def _reorder_runs(run_levels: np.ndarray, runs: np.ndarray, line: np.ndarray) -> np.ndarray:
        """Positions `line` (one line's glyphs, in logical run order) with the runs in visual order
        (UAX #9 rule L2); `runs` gives the run of each position."""
        splits = np.flatnonzero(np.diff(runs[line])) + 1
        if not len(splits):
            return line
        pieces = np.split(line, splits)
        levels = run_levels[runs[line[np.concatenate(([0], splits))]]].tolist()
        return np.concatenate([pieces[i] for i in reorder_runs(levels)])

    def _draw(self, batch: _Batch) -> tuple[np.ndarray, np.ndarray]:
        """Darkness (0 = background) of every line of the batch, one patch row each, stacked;
        `_MARGIN` wider than the canvas each side; and the columns [left, right) of each line's ink."""
        _, width = self.image_size
        patch = self.patch_size
        shaped, line_of, line_start = batch.shaped, batch.line_of, batch.line_start
        darkness = np.zeros((int(line_start[-1]) * patch, width + 2 * _MARGIN), np.int32)
        if not len(batch.order):
            return darkness, np.zeros((len(darkness) // patch, 2), np.int64)
        # Right-to-left paragraphs are right-aligned, as their readers expect.
        rtl = [level % 2 == 1 for level in batch.base_levels]
        lines = len(darkness) // patch
        align_right = np.repeat(np.array(rtl), batch.line_count) if any(rtl) else np.zeros(lines, bool)
        atlas = self.atlas
        x, lift, keys = kernels.place(
            batch.order,
            line_of,
            kernels.GlyphRow(shaped.advance, shaped.x_offset, shaped.y_offset, shaped.font, shaped.gid),
            align_right,
            width * 64,
            _MARGIN,
            atlas.subpixel,
        )
        slots = atlas.slots(keys)
        # Each line's ink is kept inside its patch row by moving the baseline, and never reaches
        # another text's rows; a stack too tall for the row (Tibetan, say) is drawn apart and shrunk.
        region = np.repeat(line_start[:-1], batch.line_count), np.repeat(line_start[1:], batch.line_count)
        placed = kernels.Placed(slots, x, lift, line_of)
        too_tall, top, bottom, columns = kernels.draw_lines(
            placed, *region, patch, self.config["baseline"], atlas.ink, darkness
        )
        for row in np.flatnonzero(too_tall).tolist() if any(too_tall.tolist()) else ():
            mine = line_of == row
            line_shape = (int(bottom[row] - top[row]), darkness.shape[1])
            line = atlas.composite(slots[mine], x[mine], -top[row] - lift[mine], line_shape)
            self._paste_scaled(line[:, _MARGIN:-_MARGIN], row, bool(align_right[row]), darkness)
            columns[row] = 0, darkness.shape[1]
        return darkness, columns

    def _paste_scaled(self, line: np.ndarray, row: int, align_right: bool, darkness: np.ndarray) -> None:
        patch, width = self.patch_size, self.image_size[1]
        scale = patch / line.shape[0]
        image = Image.fromarray(np.clip(line, 0, 255).astype(np.uint8))
        small = np.asarray(
            image.resize((max(1, round(width * scale)), patch), Image.Resampling.BOX), np.int32
        )
        x0 = _MARGIN + (width - small.shape[1] if align_right else 0)
        darkness[row * patch : (row + 1) * patch, x0 : x0 + small.shape[1]] += small

    @functools.cached_property
    def _shades(self) -> np.ndarray:
        """Gray level for each darkness 0..255, between the background and the ink brightness."""
        ink, background = self.config["text_brightness"], self.config["background_brightness"]
        return np.rint(background + (ink - background) * np.arange(256) / 255).astype(np.uint8)
