"""The compiled drawing loops on hand-made glyphs, where a rule is too rare to meet in real text."""

from __future__ import annotations

import numpy as np

from rendering import kernels
from rendering.glyphs import GlyphAtlas


def test_ink_pushed_past_a_texts_rows_is_dropped_not_drawn_into_the_next_text():
    # Two texts of one 4-pixel line each, stacked in one 8-pixel-wide buffer. The glyph's only ink
    # pixel lies one row below its origin and 9 columns right of it: past the buffer's right edge,
    # so its flat offset falls on the next row, the first of the second text.
    stride, patch, baseline = 8, 4, 2
    start, size = np.array([0]), np.array([1])
    top, bottom = np.array([1]), np.array([2])  # ink rows relative to the baseline
    left, right = np.array([9]), np.array([10])  # ink columns relative to the origin
    offsets, values = np.array([1 * stride + 9]), np.array([200], np.int32)
    one_glyph = np.zeros(1, np.int64)
    out = np.zeros((2 * patch, stride), np.int32)
    regions = np.array([0, 1]), np.array([1, 2])  # line l's text has lines region_start[l]..region_end[l]
    at_origin = kernels.Placed(one_glyph, one_glyph, one_glyph, one_glyph)  # slot 0, x 0, no lift, line 0
    ink = kernels.Ink(start, size, top, bottom, left, right, offsets, values)
    too_tall, _, _, _ = kernels.draw_lines(at_origin, *regions, patch, baseline, ink, out)
    assert not too_tall.any()
    assert not out.any(), "the pixel would have landed in row 4, the second text's"
    # The same glyph one column further left stays inside its own row (row 3) and is drawn.
    ink = ink._replace(left=np.array([7]), right=np.array([8]), offsets=np.array([1 * stride + 7]))
    _, _, _, columns = kernels.draw_lines(at_origin, *regions, patch, baseline, ink, out)
    assert out[3, 7] == 200 and out.sum() == 200
    # Each line's ink columns, which is all the shading reads: line 0 holds column 7, line 1 nothing.
    assert columns[0].tolist() == [7, 8] and columns[1, 0] >= columns[1, 1]


def test_glyph_atlas_rasterises_each_glyph_once_and_finds_it_again():
    atlas = GlyphAtlas(font_size=11, stride=288)
    a, b, c = (kernels.glyph_key(0, gid, phase) for gid, phase in ((36, 0), (37, 1), (36, 2)))
    first = atlas.slots(np.array([a, b, a, c], np.int64))
    assert first[0] == first[2] and len(set(first.tolist())) == 3  # one slot per glyph and phase
    assert atlas.slots(np.array([c, a, b], np.int64)).tolist() == [first[3], first[0], first[1]]
    d = kernels.glyph_key(0, 38, 0)
    more = atlas.slots(np.array([d, b], np.int64))
    assert more[1] == first[1] and more[0] == max(first) + 1  # only the new glyph is rasterised
    ink = atlas.ink
    assert len(ink.start) == 4 and (ink.size[first] > 0).all()  # stored with ink


def test_a_glyph_key_splits_back_into_its_font_glyph_and_subpixel_phase():
    # The key packs the font above bit 24, the glyph id in bits 3..23 and the phase (0..7) below.
    assert kernels.glyph_key(1, 1, 1) == (1 << 24) + 8 + 1
    for font, gid, phase in ((0, 36, 0), (3, 37, 5), (17, (1 << 21) - 1, 7)):
        assert kernels.split_glyph_key(kernels.glyph_key(font, gid, phase)) == (font, gid, phase)


def _ink(glyphs: list[list[tuple[int, int, int]]], stride: int) -> kernels.Ink:
    """The atlas's Ink for hand-drawn glyphs, slot after slot: each a list of inked pixels
    (row below the baseline, column right of the origin, darkness)."""
    sizes = [len(pixels) for pixels in glyphs]
    rows = [[p[0] for p in pixels] for pixels in glyphs]
    columns = [[p[1] for p in pixels] for pixels in glyphs]
    flat = [p for pixels in glyphs for p in pixels]
    return kernels.Ink(
        np.cumsum([0, *sizes[:-1]]),
        np.array(sizes),
        np.array([min(r) for r in rows]),
        np.array([max(r) + 1 for r in rows]),
        np.array([min(c) for c in columns]),
        np.array([max(c) + 1 for c in columns]),
        np.array([r * stride + c for r, c, _ in flat]),
        np.array([v for _, _, v in flat], np.int32),
    )


def test_the_baseline_moves_to_keep_each_lines_ink_inside_its_row():
    # Four lines of one text, 8-pixel rows, baseline 2 pixels below a row's top. Glyph 0 reaches 5
    # rows above its baseline (3 past the row's top), glyph 1 the 8 rows below it (2 past the
    # row's bottom), glyph 2 only rows 2..3 below it. Each line's baseline moves just enough: down
    # for glyph 0 (on the first row and on the third), up for glyph 1, not at all for glyph 2.
    stride, patch, baseline = 6, 8, 2
    ink = _ink([[(-5, 1, 10), (0, 2, 11)], [(0, 3, 20), (7, 4, 21)], [(2, 0, 5), (3, 5, 6)]], stride)
    lines = np.array([0, 1, 2, 3])
    placed = kernels.Placed(np.array([0, 1, 0, 2]), np.zeros(4, np.int64), np.zeros(4, np.int64), lines)
    out = np.zeros((4 * patch, stride), np.int32)
    too_tall, top, bottom, columns = kernels.draw_lines(
        placed, np.zeros(4, np.int64), np.full(4, 4), patch, baseline, ink, out
    )
    assert not too_tall.any() and top.tolist() == [-5, 0, -5, 2] and bottom.tolist() == [1, 8, 1, 4]
    # Line 0: baseline at row 5, so its top pixel is in row 0. Line 1: baseline at row 8 (from 10),
    # so its bottom pixel is in row 15, the last of its row. Line 2: baseline at row 21 (from 18).
    # Line 3: baseline at row 26, where it was.
    assert out[0, 1] == 10 and out[5, 2] == 11
    assert out[8, 3] == 20 and out[15, 4] == 21
    assert out[16, 1] == 10 and out[21, 2] == 11
    assert out[28, 0] == 5 and out[29, 5] == 6
    assert out.sum() == 2 * (10 + 11) + 20 + 21 + 5 + 6
    assert columns.tolist() == [[1, 3], [3, 5], [1, 3], [0, 6]]


def test_a_lifted_glyphs_ink_is_measured_and_drawn_where_the_lift_puts_it():
    # A mark lifted 3 pixels above the baseline (HarfBuzz's y offset): its ink rows -1..0 under the
    # baseline become -4..-3, and the line's baseline (row 5 of an 8-pixel row) draws it at rows 1..2.
    stride, patch, baseline = 4, 8, 5
    ink = _ink([[(-1, 0, 30), (0, 1, 40)]], stride)
    placed = kernels.Placed(np.array([0]), np.array([1]), np.array([3]), np.array([0]))
    out = np.zeros((patch, stride), np.int32)
    too_tall, top, bottom, columns = kernels.draw_lines(
        placed, np.array([0]), np.array([1]), patch, baseline, ink, out
    )
    assert not too_tall.any() and (top[0], bottom[0]) == (-4, -2)
    assert out[1, 1] == 30 and out[2, 2] == 40 and out.sum() == 70
    assert columns[0].tolist() == [1, 3]


def test_a_line_taller_than_its_row_is_left_out_and_reported():
    stride, patch = 6, 4
    ink = _ink([[(-3, 0, 5), (1, 0, 5)], [(0, 1, 7)]], stride)  # 5 rows of ink in a 4-pixel row
    placed = kernels.Placed(np.array([0, 1]), np.array([0, 2]), np.array([0, 0]), np.array([0, 1]))
    out = np.zeros((2 * patch, stride), np.int32)
    too_tall, top, bottom, _ = kernels.draw_lines(
        placed, np.array([0, 1]), np.array([1, 2]), patch, 2, ink, out
    )
    assert too_tall.tolist() == [True, False] and (top[0], bottom[0]) == (-3, 2)
    assert out[:patch].sum() == 0 and out.sum() == 7  # the short line is drawn, the tall one left to scale


def test_ink_left_of_a_texts_first_column_never_wraps_into_the_text_above():
    # Text 1's only line (row 1 of 4-pixel rows) has a glyph at x 0 whose ink starts one column
    # left of its origin, on the line's top row: its flat offset is the last pixel of text 0's rows.
    stride, patch, baseline = 8, 4, 2
    ink = _ink([[(-2, -1, 50), (-2, 0, 60)]], stride)
    placed = kernels.Placed(np.array([0]), np.array([0]), np.array([0]), np.array([1]))
    out = np.zeros((2 * patch, stride), np.int32)
    _, _, _, columns = kernels.draw_lines(
        placed, np.array([0, 1]), np.array([1, 2]), patch, baseline, ink, out
    )
    assert out[4, 0] == 60 and out.sum() == 60, "the pixel left of column 0 is dropped"
    assert columns[1].tolist() == [0, 1]  # the line's ink columns are clamped to the buffer


def test_shading_writes_only_inked_pixels_of_each_lines_ink_columns():
    # One text, two lines of 2-pixel rows in a 5-pixel-wide image; darkness has a 1-column margin
    # each side. Line 0's columns cover darkness columns 1..3 (image columns 0..2): ink outside
    # them is not the line's and is not read.
    patch, margin, width = 2, 1, 5
    darkness = np.zeros((2 * patch, width + 2 * margin), np.int64)
    darkness[0, [1, 2, 3]] = [1, 0, 300]  # faintest ink, background, past the cap
    darkness[1, 5] = 9  # outside line 0's columns
    darkness[2, 5] = 4  # line 1, inside its columns
    columns = np.array([[1, 4], [5, 6]])
    shades = (255 - np.arange(256)).astype(np.uint8)
    images = np.full((1, 2 * patch, width, 3), 255, np.uint8)
    kernels.shade(darkness, np.array([0]), np.array([2]), columns, patch, margin, shades, images)
    expected = np.full((2 * patch, width), 255, np.uint8)
    expected[0, 0], expected[0, 2], expected[2, 4] = 254, 0, 251
    assert (images[0] == expected[..., None]).all()
    # A line past the image's height is not drawn: only as many lines as whole rows fit.
    short = np.full((1, patch, width, 3), 255, np.uint8)
    kernels.shade(darkness, np.array([0]), np.array([2]), columns, patch, margin, shades, short)
    assert (short[0] == expected[:patch, :, None]).all()


def test_unifont_drawing_flags_missing_glyphs_and_lone_surrogates_separately():
    # Glyph 0 is the empty "no glyph"; 1 is a 2-column bar; U+FFFD (drawn for a surrogate) has glyph 2.
    index = np.zeros(0x10000, np.int64)
    index[ord("a")], index[0xFFFD] = 1, 2
    ink = np.zeros((16, 6), np.uint8)
    ink[:, 2:4] = 1  # glyph 1's strip
    ink[0, 4:6] = 1  # glyph 2's strip: its top row only
    glyphs = kernels.UnifontGlyphs(index, np.array([2, 2, 2]), np.array([0, 2, 4]), ink)
    texts = ["aa", "a\ue000", "a\ud800", "\ue000\ud800"]
    cps = np.array([ord(c) for c in "".join(texts)], np.int64)
    text_start = np.array([0, 2, 4, 6, 8])
    images = np.zeros((4, 16, 16 * 3), np.uint8)
    drawn, lines, flags = (np.zeros(4, np.int64) for _ in range(3))
    kernels.unifont_draw(cps, text_start, glyphs, 9, images, drawn, lines, flags)
    assert flags.tolist() == [0, 1, 2, 3]
    assert drawn.tolist() == [2, 2, 2, 2] and lines.tolist() == [1, 1, 1, 1]
    bar = np.zeros((16, 16 * 3), np.uint8)
    bar[:, 0:6] = 9  # two columns of three bytes
    assert (images[0][:, :12] == np.concatenate([bar[:, :6], bar[:, :6]], axis=1)).all()
    assert (images[1][:, 6:] == 0).all(), "the missing glyph draws nothing"
    assert images[2][0, 6:12].tolist() == [9] * 6 and images[2][1:, 6:].sum() == 0
