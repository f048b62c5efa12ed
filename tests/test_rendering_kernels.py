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
