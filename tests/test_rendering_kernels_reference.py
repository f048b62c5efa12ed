"""The shaped renderer's compiled layout loops against plain Python written from their contracts,
on generated inputs: line breaking, which glyphs land on which line, runs, placement, lookup.

The references loop the obvious way (every candidate tried, no bisection, no running sums), so an
off-by-one in the kernels' shortcuts shows up as a difference.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rendering import kernels

SPACE, LETTER, TSHEG, CLOSE, HAN = 32, 97, 0x0F0B, 0x3001, 0x4E00
NO_SPACE = np.zeros(HAN + 1, bool)
NO_SPACE[HAN] = True  # written without spaces: lines may break between its clusters
NO_BREAK_BEFORE = np.zeros(HAN + 1, bool)
NO_BREAK_BEFORE[CLOSE] = True  # no line starts with it
TABLES = kernels.BreakTables(NO_SPACE, NO_BREAK_BEFORE)
# The first example of each test waits for numba to compile (or load) the kernel.
COMPILES_FIRST = settings(max_examples=300, deadline=None)


def reference_break(
    cps: list[int],
    cluster: list[int],
    advance: list[int],
    limit: int,
    check_no_space: bool,
    bounds: list[int],
    rows: int,
) -> tuple[list[tuple[int, int]], int]:
    """`kernels.break_lines` from its docstring: (lines, where the text left off), or
    ([], NEED_CLUSTERS) when grapheme boundaries are needed and not given."""
    n = len(cps)

    def pen(i: int) -> int:  # x before code point i: the advances of the glyphs of earlier clusters
        return sum(a for c, a in zip(cluster, advance, strict=True) if c < i)

    if rows >= 1 and min(advance, default=0) >= 0 and sum(advance) <= limit:
        return [(0, n)], n
    if check_no_space and not bounds:
        return [], kernels.NEED_CLUSTERS

    def may_end(i: int) -> bool:
        before, after = cps[i - 1], cps[i]
        if (before == SPACE and after != SPACE) or before == TSHEG:
            return True
        return (
            check_no_space
            and bool(NO_SPACE[before] or NO_SPACE[after])
            and after != SPACE
            and not NO_BREAK_BEFORE[after]
            and i in bounds
        )

    def ink_end(end: int) -> int:  # a trailing space takes no room
        return end - 1 if cps[end - 1] == SPACE else end

    ends = [i for i in range(1, n) if may_end(i)] + [n]
    lines: list[tuple[int, int]] = []
    start = 0
    while start < n and len(lines) < rows:
        fitting = [e for e in ends if e > start and pen(ink_end(e)) - pen(start) <= limit]
        if fitting:
            end = max(fitting)
            lines.append((start, ink_end(end)))
        else:
            if not bounds:
                return [], kernels.NEED_CLUSTERS
            later = [b for b in bounds if b > start]
            fit = [b for b in later if pen(b) - pen(start) <= limit]
            end = max(fit) if fit else min(later)
            lines.append((start, end))
        start = end
    return lines, start


@st.composite
def texts_to_break(draw: st.DrawFn) -> dict:
    # Letters and Han twice as often: long words, and breaks beside a script without spaces.
    alphabet = [SPACE, LETTER, LETTER, TSHEG, CLOSE, HAN, HAN]
    cps = draw(st.lists(st.sampled_from(alphabet), min_size=1, max_size=10))
    glyphs_per_cp = draw(st.lists(st.integers(0, 2), min_size=len(cps), max_size=len(cps)))
    cluster = [i for i, count in enumerate(glyphs_per_cp) for _ in range(count)]
    advance = draw(st.lists(st.integers(0, 300), min_size=len(cluster), max_size=len(cluster)))
    inner = draw(st.sets(st.integers(1, len(cps) - 1))) if len(cps) > 1 else set()
    every = list(range(1, len(cps) + 1))  # each code point a grapheme cluster, as in most text
    bounds = draw(st.sampled_from([[], every, [*sorted(inner), len(cps)]]))
    return {
        "cps": cps,
        "cluster": cluster,
        "advance": advance,
        "limit": draw(st.integers(0, 900)),
        "check_no_space": draw(st.booleans()),
        "bounds": bounds,
        "rows": draw(st.integers(1, 4)),
    }


def _break(case: dict) -> tuple[list[tuple[int, int]], int]:
    lines = np.full((case["rows"], 2), -7, np.int64)
    written, rest = kernels.break_lines(
        np.array(case["cps"], np.int64),
        np.array(case["cluster"], np.int64),
        np.array(case["advance"], np.int64),
        case["limit"],
        case["check_no_space"],
        TABLES,
        np.array(case["bounds"], np.int64),
        lines,
    )
    if written == kernels.NEED_CLUSTERS:
        return [], kernels.NEED_CLUSTERS
    assert (lines[written:] == -7).all(), "rows past the lines written are left alone"
    return [tuple(row) for row in lines[:written].tolist()], rest


@COMPILES_FIRST
@given(texts_to_break())
def test_line_breaking_matches_the_greedy_rule_tried_candidate_by_candidate(case):
    assert _break(case) == reference_break(**case)


def test_a_text_exactly_as_wide_as_the_line_fits_on_it():
    # 64 units per letter: "ab cd" with limit 2 letters. Each word fills a line to the last unit.
    word = {"cps": [LETTER, LETTER, SPACE, LETTER, LETTER], "cluster": [0, 1, 2, 3, 4]}
    case = {**word, "advance": [64] * 5, "check_no_space": False, "bounds": [], "rows": 3}
    assert _break({**case, "limit": 128}) == ([(0, 2), (3, 5)], 5)
    assert _break({**case, "limit": 127}) == ([], kernels.NEED_CLUSTERS)  # no word fits whole
    assert _break({**case, "limit": 320}) == ([(0, 5)], 5)  # the whole text, exactly
    # A word wider than the line breaks at the last grapheme boundary that still fits, exactly.
    long_word = {**case, "cps": [LETTER] * 5, "bounds": [1, 2, 3, 4, 5], "limit": 192}
    assert _break(long_word) == ([(0, 3), (3, 5)], 5)
    # ... measured from where each line starts, not from the text's start.
    assert _break({**long_word, "limit": 128}) == ([(0, 2), (2, 4), (4, 5)], 5)


def test_a_line_may_end_beside_a_character_of_a_script_written_without_spaces():
    # "漢ab" in lines two letters wide: a break after 漢 (before a letter) keeps "ab" whole.
    case = {"cps": [HAN, LETTER, LETTER], "cluster": [0, 1, 2], "advance": [64] * 3, "limit": 128}
    case |= {"check_no_space": True, "bounds": [1, 2, 3], "rows": 3}
    assert _break(case) == ([(0, 1), (1, 3)], 3)
    # "ab漢" likewise, before 漢; but never before closing punctuation such as "、".
    assert _break({**case, "cps": [LETTER, LETTER, HAN]}) == ([(0, 2), (2, 3)], 3)
    assert _break({**case, "cps": [HAN, CLOSE, LETTER]}) == ([(0, 2), (2, 3)], 3)


@COMPILES_FIRST
@given(st.lists(texts_to_break(), min_size=1, max_size=4), st.integers(0, 900), st.integers(1, 4))
def test_a_batch_breaks_each_text_as_alone_and_finds_the_glyphs_of_each_line(cases, limit, rows):
    cases = [{**c, "limit": limit, "rows": rows, "bounds": []} for c in cases]
    cps = np.array([cp for c in cases for cp in c["cps"]], np.int64)
    cp_start = np.cumsum([0] + [len(c["cps"]) for c in cases])
    cluster = np.array([k for c in cases for k in c["cluster"]], np.int64)
    advance = np.array([a for c in cases for a in c["advance"]], np.int64)
    glyph_start = np.cumsum([0] + [len(c["cluster"]) for c in cases])
    check = np.array([c["check_no_space"] for c in cases])
    batch = kernels.TextBatch(cps, cp_start, cluster, advance, glyph_start)
    lines, line_count, rest = kernels.break_batch(batch, limit, check, TABLES, rows)
    assert lines.shape == (len(cases), rows, 2)
    for t, case in enumerate(cases):
        expected, where = reference_break(**case)
        assert line_count[t] == (len(expected) if where != kernels.NEED_CLUSTERS else where)
        if where != kernels.NEED_CLUSTERS:
            assert [tuple(r) for r in lines[t, : line_count[t]].tolist()] == expected
            assert rest[t] == where

    # Which glyphs are drawn, on which line: a glyph goes on the last line starting at or before
    # its cluster, if its cluster comes before that line's ink ends.
    counts = np.maximum(line_count, 0)
    line_start = np.cumsum(np.concatenate(([0], counts)))
    idx, line_of, text_start = kernels.glyphs_on_lines(cluster, glyph_start, lines, counts, line_start)
    expected_glyphs, expected_lines, expected_start = [], [], [0]
    for t in range(len(cases)):
        for g in range(glyph_start[t], glyph_start[t + 1]):
            on = [k for k in range(counts[t]) if lines[t, k, 0] <= cluster[g]]
            if on and cluster[g] < lines[t, on[-1], 1]:
                expected_glyphs.append(g)
                expected_lines.append(line_start[t] + on[-1])
        expected_start.append(len(expected_glyphs))
    assert (idx.tolist(), line_of.tolist(), text_start.tolist()) == (
        expected_glyphs,
        expected_lines,
        expected_start,
    )


@st.composite
def texts_and_runs(draw: st.DrawFn) -> tuple:
    lengths = draw(st.lists(st.integers(0, 5), min_size=1, max_size=5))
    split_count = [draw(st.integers(0, 3)) if n else 0 for n in lengths]
    split = draw(
        st.lists(
            st.lists(st.integers(0, 50), min_size=7, max_size=7),
            min_size=sum(split_count),
            max_size=sum(split_count),
        )
    )
    single = draw(st.lists(st.integers(-1, 6), min_size=len(lengths), max_size=len(lengths)))
    language = draw(st.lists(st.integers(0, 3), min_size=len(lengths), max_size=len(lengths)))
    return lengths, split_count, split, single, language


@COMPILES_FIRST
@given(texts_and_runs())
def test_runs_of_a_batch_are_the_texts_split_runs_or_one_left_to_right_run_each(case):
    lengths, split_count, split, single, language = case
    starts = np.cumsum([0, *lengths])
    runs, levels, run_start = kernels.runs_of_texts(
        starts,
        np.array(single, np.int64),
        np.array(language, np.int64),
        np.array(split_count, np.int64),
        np.array(split, np.int64).reshape(-1, 7),
    )
    expected_runs, expected_levels, expected_start = [], [], [0]
    taken = 0
    for t, n in enumerate(lengths):
        if split_count[t]:
            for row in split[taken : taken + split_count[t]]:
                expected_runs.append([*row[:6], language[t]])
                expected_levels.append(row[6])
            taken += split_count[t]
        elif n:
            # text start, text length, run start, run end, right to left, font, language
            expected_runs.append([int(starts[t]), n, 0, n, 0, single[t], language[t]])
            expected_levels.append(0)
        expected_start.append(len(expected_runs))
    assert (runs.tolist(), levels.tolist(), run_start.tolist()) == (
        expected_runs,
        expected_levels,
        expected_start,
    )


@st.composite
def lines_of_glyphs(draw: st.DrawFn) -> tuple:
    glyphs_per_line = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    n = sum(glyphs_per_line)
    row = kernels.GlyphRow(
        *(np.array(draw(st.lists(values, min_size=n, max_size=n)), np.int64) for values in (
            st.integers(0, 700),  # advance, 26.6
            st.integers(-200, 200),  # x offset
            st.integers(-200, 200),  # y offset
            st.integers(0, 3),  # font
            st.integers(0, 5000),  # glyph id
        ))
    )  # fmt: skip
    order = np.array(draw(st.permutations(range(n))), np.int64)
    line_of = np.repeat(np.arange(len(glyphs_per_line)), glyphs_per_line)
    right = draw(st.lists(st.booleans(), min_size=len(glyphs_per_line), max_size=len(glyphs_per_line)))
    return order, line_of, row, np.array(right), draw(st.integers(64, 2000)), draw(st.sampled_from([1, 4, 8]))


@COMPILES_FIRST
@given(lines_of_glyphs(), st.integers(0, 40))
def test_placement_walks_each_line_from_its_start_or_to_its_right_end(case, margin):
    order, line_of, glyphs, align_right, width, subpixel = case
    x, lift, keys = kernels.place(order, line_of, glyphs, align_right, width, margin, subpixel)
    for line in np.unique(line_of).tolist():
        mine = np.flatnonzero(line_of == line)
        total = sum(int(glyphs.advance[order[k]]) for k in mine)
        pen = width - total if align_right[line] else 0
        for k in mine.tolist():
            g = order[k]
            left = pen + int(glyphs.x_offset[g])
            whole, fraction = divmod(left, 64)  # floor, also left of the canvas
            assert x[k] == whole + margin
            assert lift[k] == round_half_up(int(glyphs.y_offset[g]), 64)
            phase = fraction * subpixel // 64
            assert 0 <= phase < subpixel
            assert keys[k] == kernels.glyph_key(int(glyphs.font[g]), int(glyphs.gid[g]), phase)
            pen += int(glyphs.advance[g])


def round_half_up(value: int, unit: int) -> int:
    """value / unit to the nearest whole number, halves up (toward +infinity)."""
    whole, rest = divmod(value, unit)
    return whole + (2 * rest >= unit)


def test_a_glyph_between_pixels_is_keyed_by_its_subpixel_phase():
    # Origins at 40/64 and 40/64 + 1.5 pixels: phases 5 and 1 of 8 (and 2 and 0 of 4).
    glyphs = kernels.GlyphRow(*(np.array(v, np.int64) for v in ([96, 0], [40, 40], [0, -33], [1, 2], [7, 9])))
    order, line_of, left_aligned = np.array([0, 1]), np.array([0, 0]), np.array([False])
    x, lift, keys = kernels.place(order, line_of, glyphs, left_aligned, 640, 3, 8)
    assert x.tolist() == [3, 5] and lift.tolist() == [0, -1]
    assert [kernels.split_glyph_key(k) for k in keys.tolist()] == [(1, 7, 5), (2, 9, 1)]
    _, _, keys = kernels.place(order, line_of, glyphs, left_aligned, 640, 3, 4)
    assert [kernels.split_glyph_key(k)[2] for k in keys.tolist()] == [2, 0]


@COMPILES_FIRST
@given(
    st.sets(st.integers(0, 1 << 40), max_size=30), st.lists(st.integers(0, 1 << 40), max_size=30), st.data()
)
def test_lookup_finds_exactly_the_stored_keys(stored, queries, data):
    stored = sorted(stored)
    queries += data.draw(st.lists(st.sampled_from(stored), max_size=10)) if stored else []
    values = {key: i * 3 + 1 for i, key in enumerate(stored)}
    out, missing = kernels.lookup(
        np.array(stored, np.int64),
        np.array([values[k] for k in stored], np.int64),
        np.array(queries, np.int64),
    )
    assert out.tolist() == [values.get(q, -1) for q in queries]
    assert missing == sum(q not in values for q in queries)


def test_lookup_reads_nothing_past_the_keys_it_is_given():
    # The keys are a view of a longer array whose next element is the key asked for.
    keys, values = np.array([10, 20, 30], np.int64), np.array([1, 2, 99], np.int64)
    out, missing = kernels.lookup(keys[:2], values[:2], np.array([30, 20], np.int64))
    assert out.tolist() == [-1, 2] and missing == 1
