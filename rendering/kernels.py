"""The renderers' inner loops, compiled with numba: the `shaped` renderer's line breaking, glyph
placement, compositing and shading, and the `unifont` renderer's wrapping and drawing.

They run per code point, per glyph and per pixel. Written as numpy expressions they took dozens of
array calls per text, and at a few microseconds per call that fixed cost, not the work, bounded the
renderer's speed. Compiled loops do the same arithmetic, with the same integer rounding, in one call
each.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rendering.jit import compiled

_SPACE = 32
_TSHEG = 0x0F0B
# Two sentinels of different meaning, kept apart so that one can never pass for the other: a line
# count of `break_lines` that asks for grapheme clusters, and a text's font when it wants several.
NEED_CLUSTERS = -1
MIXED = -2


class Ink(NamedTuple):
    """The glyph atlas's ink, as the drawing loops read it. Per slot: where its pixels start in
    `offsets`/`values` and how many there are, its ink's top and bottom rows (relative to the
    baseline) and left and right columns (relative to the origin). Then every inked pixel's flat
    offset from its glyph's origin, and its darkness."""

    start: np.ndarray
    size: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray
    offsets: np.ndarray
    values: np.ndarray


class BreakTables(NamedTuple):
    """Per code point: in a script written without spaces (lines may break between its grapheme
    clusters), and closing punctuation no line may start with. Empty when no text needs them."""

    no_space: np.ndarray
    no_break_before: np.ndarray


class GlyphRow(NamedTuple):
    """HarfBuzz's glyphs, end to end: advance and offsets in 26.6 pixels, font and glyph id."""

    advance: np.ndarray
    x_offset: np.ndarray
    y_offset: np.ndarray
    font: np.ndarray
    gid: np.ndarray


class UnifontGlyphs(NamedTuple):
    """Unifont's glyphs as `unifont_draw` reads them: `index[cp]` is code point cp's glyph (0 for
    none), drawn `widths[glyph]` columns wide from ink column `strip_start[glyph]` of `ink`."""

    index: np.ndarray
    widths: np.ndarray
    strip_start: np.ndarray
    ink: np.ndarray


class TextBatch(NamedTuple):
    """A batch's texts and their glyphs, end to end, as line breaking reads them: text t's code
    points are `cps[cp_start[t]:cp_start[t + 1]]` and its glyphs `glyph_start[t]` to
    `glyph_start[t + 1]`, each with the offset of its cluster in the text and its advance (26.6)."""

    cps: np.ndarray
    cp_start: np.ndarray
    cluster: np.ndarray
    advance: np.ndarray
    glyph_start: np.ndarray


class Placed(NamedTuple):
    """Glyphs placed on lines: each one's atlas slot, x of its origin in whole pixels, lift above
    the baseline, and line in the batch's numbering."""

    slots: np.ndarray
    x: np.ndarray
    lift: np.ndarray
    line_of: np.ndarray


@compiled
def text_facts(
    cps: np.ndarray,
    starts: np.ndarray,
    classes: np.ndarray,
    strong: np.ndarray,
    cover: np.ndarray,
    inherit: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each text t = cps[starts[t]:starts[t + 1]] of a batch: the OR of `classes`
    (`chartables.class_table`) over it; the one font its characters take first (`strong`, a font
    index per code point, `inherit` for those that take their neighbours'), `inherit` if none does,
    MIXED if they want two or more; and the AND of `cover` (a bit per font) over it."""
    kinds = np.zeros(len(starts) - 1, np.int64)
    font = np.full(len(starts) - 1, inherit, np.int64)
    covered = np.full(len(starts) - 1, -1, np.int64)
    for t in range(len(font)):
        bits, mask, first = 0, -1, inherit
        for i in range(starts[t], starts[t + 1]):
            cp = cps[i]
            bits |= classes[cp]
            mask &= cover[cp]
            s = strong[cp]
            if s != inherit and s != first:
                first = s if first == inherit else MIXED
        kinds[t], font[t], covered[t] = bits, first, mask
    return kinds, font, covered


@compiled
def single_fonts(
    first: np.ndarray,
    covered: np.ndarray,
    kinds: np.ndarray,
    asks_emoji: int,
    preferred: np.ndarray,
    cjk: np.ndarray,
    default_cjk: int,
    emoji: int,
) -> np.ndarray:
    """For each text, the one font that draws all of it, or -1 (rules: `FontStack.single_fonts`).
    `preferred`: the CJK face its language puts first; `cjk`: which fonts are CJK faces;
    `asks_emoji`: the bit of `kinds` set by U+FE0F; `emoji`: the emoji font, -1 if none."""
    out = np.full(len(first), -1, np.int64)
    for t in range(len(first)):
        font = first[t]
        if font < 0 or font >= len(cjk):
            continue
        if cjk[font] and preferred[t] != font:
            if preferred[t] < 0 or preferred[t] == default_cjk:
                continue
            font = preferred[t]
        if kinds[t] & asks_emoji and font != emoji and emoji >= 0:
            continue
        if covered[t] >> font & 1:
            out[t] = font
    return out


@compiled
def runs_of_texts(
    starts: np.ndarray, single: np.ndarray, language: np.ndarray, split_count: np.ndarray, split: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`harfbuzz.Runs.spans` for a batch, its runs' bidi levels and where each text's runs start.
    A text with `split_count` runs takes them from `split` (rows of spans less the language, then a
    level; text after text); a non-empty text with none is one run, left to right in its `single`
    font. Every run takes its text's `language`."""
    texts = len(single)
    count = np.empty(texts, np.int64)
    for t in range(texts):
        count[t] = split_count[t] if split_count[t] or starts[t + 1] == starts[t] else 1
    run_start = np.zeros(texts + 1, np.int64)
    run_start[1:] = np.cumsum(count)
    runs = np.zeros((run_start[-1], 7), np.int64)
    levels = np.zeros(run_start[-1], np.int64)
    taken = 0
    for t in range(texts):
        r = run_start[t]
        if split_count[t] == 0 and count[t] == 1:
            length = starts[t + 1] - starts[t]
            runs[r, 0], runs[r, 1], runs[r, 3], runs[r, 5] = starts[t], length, length, single[t]
        for k in range(split_count[t]):
            runs[r + k, :6] = split[taken, :6]
            levels[r + k] = split[taken, 6]
            taken += 1
        runs[r : r + count[t], 6] = language[t]
    return runs, levels, run_start


@compiled
def _bisect_right(values: np.ndarray, x: int, lo: int, hi: int) -> int:
    while lo < hi:
        mid = (lo + hi) // 2
        if x < values[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@compiled
def break_lines(
    cps: np.ndarray,
    cluster: np.ndarray,
    advance: np.ndarray,
    limit: int,
    check_no_space: bool,
    tables: BreakTables,
    cluster_bounds: np.ndarray,
    lines: np.ndarray,
) -> tuple[int, int]:
    """Greedy line breaking: each line takes the most words whose ink fits `limit` (26.6 pixels).

    A line may end after a space, after a Tibetan tsheg, and (with `check_no_space`) between
    grapheme clusters where either side is in a script written without spaces, never before
    closing punctuation (`tables`). A word wider than a line breaks at the last grapheme boundary that fits.
    Writes (start, end of ink) code point offsets into `lines`, as many as it has rows, and returns
    (lines written, offset where the text left off). Returns (NEED_CLUSTERS, 0) when it needs
    the grapheme boundaries `cluster_bounds` (sorted offsets ending at len(cps)) and got none.
    """
    no_space, no_break_before = tables
    n = len(cps)
    rows = lines.shape[0]
    pen = np.zeros(n + 1, np.int64)  # pen[i]: x before code point i
    widest = 0
    fits = True
    for g in range(len(cluster)):
        pen[cluster[g] + 1] += advance[g]
        widest += advance[g]
        fits &= advance[g] >= 0
    if rows >= 1 and fits and widest <= limit:
        lines[0, 0] = 0
        lines[0, 1] = n
        return 1, n
    for i in range(n):
        pen[i + 1] += pen[i]
    if check_no_space and len(cluster_bounds) == 0:
        return NEED_CLUSTERS, 0
    ends = np.empty(n, np.int64)
    count = 0
    bound = 0
    for i in range(1, n):
        before, after = cps[i - 1], cps[i]
        ok = (before == _SPACE and after != _SPACE) or before == _TSHEG
        if not ok and check_no_space and (no_space[before] or no_space[after]):
            while cluster_bounds[bound] < i:
                bound += 1
            ok = after != _SPACE and not no_break_before[after] and cluster_bounds[bound] == i
        if ok:
            ends[count] = i
            count += 1
    ends[count] = n
    count += 1
    ink_ends = np.empty(count, np.int64)
    ink_pen = np.empty(count, np.int64)
    for k in range(count):
        ink_ends[k] = ends[k] - (cps[ends[k] - 1] == _SPACE)  # a trailing space takes no room
        ink_pen[k] = pen[ink_ends[k]]
    written = 0
    start = 0
    while start < n and written < rows:
        first = _bisect_right(ends, start, 0, count)
        last = _bisect_right(ink_pen, pen[start] + limit, first, count) - 1
        if last >= first:
            end, ink_end = ends[last], ink_ends[last]
        else:
            if len(cluster_bounds) == 0:
                return NEED_CLUSTERS, 0
            first_after, last_fit = -1, -1
            for b in cluster_bounds:
                if b > start:
                    first_after = b if first_after < 0 else first_after
                    last_fit = b if pen[b] - pen[start] <= limit else last_fit
            end = last_fit if last_fit >= 0 else first_after
            ink_end = end
        lines[written, 0] = start
        lines[written, 1] = ink_end
        written += 1
        start = end
    return written, start


@compiled
def break_batch(
    batch: TextBatch,
    limit: int,
    check_no_space: np.ndarray,
    tables: BreakTables,
    rows: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`break_lines` for each text of `batch`: text t's lines (texts x `rows` x 2), their number
    (NEED_CLUSTERS where it needs grapheme boundaries) and where the text that fits ends."""
    cps, cp_start, cluster, advance, glyph_start = batch
    texts = len(cp_start) - 1
    lines = np.zeros((texts, rows, 2), np.int64)
    line_count = np.zeros(texts, np.int64)
    rest = np.zeros(texts, np.int64)
    no_bounds = np.zeros(0, np.int64)
    for t in range(texts):
        c0, c1, g0, g1 = cp_start[t], cp_start[t + 1], glyph_start[t], glyph_start[t + 1]
        if c1 > c0:
            line_count[t], rest[t] = break_lines(
                cps[c0:c1],
                cluster[g0:g1],
                advance[g0:g1],
                limit,
                check_no_space[t],
                tables,
                no_bounds,
                lines[t],
            )
    return lines, line_count, rest


@compiled
def glyphs_on_lines(
    cluster: np.ndarray,
    glyph_start: np.ndarray,
    lines: np.ndarray,
    line_count: np.ndarray,
    line_start: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The glyphs on some line (a glyph's cluster decides its line; those past the last line are not
    drawn), in HarfBuzz's order, with their line in the batch's numbering, and where each text's
    glyphs start among them."""
    idx = np.empty(glyph_start[-1], np.int64)
    line_of = np.empty(glyph_start[-1], np.int64)
    text_start = np.zeros(len(line_count) + 1, np.int64)
    m = 0
    for t in range(len(line_count)):
        count = line_count[t]
        starts = lines[t, :count, 0].copy()
        for g in range(glyph_start[t], glyph_start[t + 1]):
            line = _bisect_right(starts, cluster[g], 0, count) - 1
            if line >= 0 and cluster[g] < lines[t, line, 1]:
                idx[m] = g
                line_of[m] = line_start[t] + line
                m += 1
        text_start[t + 1] = m
    return idx[:m], line_of[:m], text_start


@compiled
def glyph_key(font: int, gid: int, phase: int) -> int:
    """The glyph atlas's key of a glyph drawn at a subpixel phase (0..7)."""
    return (font << 24) | (gid << 3) | phase


@compiled
def lookup(sorted_keys: np.ndarray, values: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, int]:
    """The value of each key (-1 where `sorted_keys` lacks it) and how many were missing."""
    out = np.empty(len(keys), np.int64)
    missing = 0
    for i in range(len(keys)):
        j = np.searchsorted(sorted_keys, keys[i])
        if j < len(sorted_keys) and sorted_keys[j] == keys[i]:
            out[i] = values[j]
        else:
            out[i] = -1
            missing += 1
    return out, missing


def split_glyph_key(key: int) -> tuple[int, int, int]:
    return key >> 24, (key >> 3) & 0x1FFFFF, key & 7


@compiled
def place(
    order: np.ndarray,
    line_of: np.ndarray,
    glyphs: GlyphRow,
    align_right: np.ndarray,
    width: int,
    margin: int,
    subpixel: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where `glyphs` `order` (visual order, line after line; line_of[i] is the line of order[i]) go:
    x of each origin in whole pixels plus `margin`, its lift above the baseline, and its atlas key
    (the subpixel phase of x included). Each line starts at 0, or ends at `width` (26.6) where
    align_right[line] is set."""
    advance, x_offset, y_offset, font, gid = glyphs
    n = len(order)
    x = np.empty(n, np.int64)
    lift = np.empty(n, np.int64)
    keys = np.empty(n, np.int64)
    i = 0
    while i < n:
        j = i
        total = 0
        while j < n and line_of[j] == line_of[i]:
            total += advance[order[j]]
            j += 1
        pen = width - total if align_right[line_of[i]] else 0
        for k in range(i, j):
            g = order[k]
            left = pen + x_offset[g]
            x[k] = left // 64 + margin
            lift[k] = (y_offset[g] + 32) // 64
            keys[k] = glyph_key(font[g], gid[g], left % 64 * subpixel // 64)
            pen += advance[g]
        i = j
    return x, lift, keys


@compiled
def composite(
    slots: np.ndarray, x: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray, ink: Ink, out: np.ndarray
) -> None:
    """Add the glyphs' ink to `out` (2-D, as wide as the atlas stride), glyph i's origin at (x[i], y[i]).

    Ink adds up where glyphs overlap (marks on their base, a kerned pair); pixels that fall outside
    lo[i]..hi[i] (flat offsets into `out`, which glyph i may reach) are dropped.
    """
    flat = out.reshape(-1)
    stride = out.shape[1]
    for i in range(len(slots)):
        origin = y[i] * stride + x[i]
        s = ink.start[slots[i]]
        for k in range(s, s + ink.size[slots[i]]):
            at = ink.offsets[k] + origin
            if lo[i] <= at < hi[i]:
                flat[at] += ink.values[k]


@compiled
def draw_lines(
    glyphs: Placed,
    region_start: np.ndarray,
    region_end: np.ndarray,
    patch: int,
    baseline: int,
    ink: Ink,
    out: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Composite each line into its patch row of `out` (line l's row starts at l * patch), the
    baseline moved to keep the ink inside the row; ink never leaves the rows of lines
    region_start[l]..region_end[l] (its text). Lines whose ink is taller than a row are left out:
    returns which (and each line's ink top and bottom, relative to its baseline) for the caller to
    scale them down, and each line's ink columns in `out` [left, right) (empty for no ink).
    """
    slots, x, lift, line_of = glyphs
    n_lines = len(region_start)
    ink_top = np.full(n_lines, 1 << 62, np.int64)
    ink_bottom = np.full(n_lines, -(1 << 62), np.int64)
    columns = np.zeros((n_lines, 2), np.int64)
    columns[:, 0] = out.shape[1]
    for i in range(len(slots)):
        line, slot = line_of[i], slots[i]
        ink_top[line] = min(ink_top[line], ink.top[slot] - lift[i])
        ink_bottom[line] = max(ink_bottom[line], ink.bottom[slot] - lift[i])
        # A glyph without ink has left NO_INK and right -NO_INK: it never widens the columns.
        columns[line, 0] = max(0, min(columns[line, 0], x[i] + ink.left[slot]))
        columns[line, 1] = min(out.shape[1], max(columns[line, 1], x[i] + ink.right[slot]))
    too_tall = np.zeros(n_lines, np.bool_)
    base = np.empty(n_lines, np.int64)
    for row in range(n_lines):
        b = row * patch + baseline
        b += max(0, row * patch - (b + ink_top[row]))
        base[row] = b - max(0, b + ink_bottom[row] - (row + 1) * patch)
        too_tall[row] = ink_bottom[row] - ink_top[row] > patch
    normal = np.empty(len(slots), np.bool_)
    y = np.empty(len(slots), np.int64)
    lo = np.empty(len(slots), np.int64)
    hi = np.empty(len(slots), np.int64)
    row_size = patch * out.shape[1]
    for i in range(len(slots)):
        line = line_of[i]
        normal[i] = not too_tall[line]
        y[i] = base[line] - lift[i]
        lo[i] = region_start[line] * row_size
        hi[i] = region_end[line] * row_size
    composite(slots[normal], x[normal], y[normal], lo[normal], hi[normal], ink, out)
    return too_tall, ink_top, ink_bottom, columns


@compiled
def shade(
    darkness: np.ndarray,
    line_start: np.ndarray,
    line_count: np.ndarray,
    columns: np.ndarray,
    patch: int,
    margin: int,
    shades: np.ndarray,
    images: np.ndarray,
) -> None:
    """Write gray levels `shades[darkness]` (darkness capped at 255) over N x H x W x 3 images that
    already hold the background, in the rows of text t's lines, from the top, the `margin` columns
    each side of `darkness` cut off; only line l's ink columns [columns[l, 0], columns[l, 1]) of
    `darkness` are read (a query's line is a third of the canvas). Only inked pixels are written:
    the caller fills the background with one memset, whose streaming stores cost half of what
    filling cold memory pixel by pixel here does."""
    height, width = images.shape[1], images.shape[2]
    for t in range(len(line_count)):
        for k in range(min(line_count[t], height // patch)):
            line = line_start[t] + k
            c0 = max(columns[line, 0] - margin, 0)
            c1 = min(columns[line, 1] - margin, width)
            for dr in range(min(patch, height - k * patch)):
                for c in range(c0, c1):
                    r = k * patch + dr
                    d = darkness[line * patch + dr, c + margin]
                    if d > 0:
                        g = shades[min(d, 255)]
                        images[t, r, c, 0] = g
                        images[t, r, c, 1] = g
                        images[t, r, c, 2] = g


# A lone surrogate is not a character: the `unifont` style draws U+FFFD for it, as a UTF-8 decoder would.
SURROGATES = (0xD800, 0xDFFF)
REPLACEMENT = 0xFFFD


@compiled
def _unifont_code_point(cp: int) -> int:
    return REPLACEMENT if SURROGATES[0] <= cp <= SURROGATES[1] else cp


@compiled
def unifont_draw(
    cps: np.ndarray,
    text_start: np.ndarray,
    glyphs: UnifontGlyphs,
    text_value: int,
    images: np.ndarray,
    drawn: np.ndarray,
    lines: np.ndarray,
    flags: np.ndarray,
) -> None:
    """big_vision's `render_unifont` for text t = cps[text_start[t]:text_start[t + 1]] into images[t]
    (height x width*3 bytes that hold the background), wrapped by character at row
    floor(end / (width - widest glyph)). Sets how many code points were drawn, the lines used, and
    `flags` bit 1 where a drawn code point has no glyph, bit 2 where the text holds a lone surrogate
    (drawn as U+FFFD)."""
    index, widths, strip_start, ink = glyphs
    height, width = images.shape[1], images.shape[2] // 3
    rows = (height + 15) // 16
    for t in range(len(text_start) - 1):
        a, b = text_start[t], text_start[t + 1]
        widest = 0
        for i in range(a, b):
            cp = _unifont_code_point(cps[i])
            if cp != cps[i]:
                flags[t] |= 2
            widest = max(widest, widths[index[cp]])
        end, row, origin, n = 0, 0, 0, 0
        for i in range(a, b):
            glyph = index[_unifont_code_point(cps[i])]
            w = widths[glyph]
            begin = end
            end += w
            line = end // (width - widest)
            if line >= rows:
                break
            if line != row:
                row, origin = line, begin
            if glyph == 0:
                flags[t] |= 1
            x = 3 * (begin - origin)
            for y in range(min(16, height - 16 * line)):
                for j in range(w):
                    if ink[y, strip_start[glyph] + j]:
                        at = x + 3 * j
                        images[t, 16 * line + y, at] = text_value
                        images[t, 16 * line + y, at + 1] = text_value
                        images[t, 16 * line + y, at + 2] = text_value
            n += 1
        drawn[t] = n
        lines[t] = row + 1 if n else 0
