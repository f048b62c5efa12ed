"""The shaped renderer's batch passes against the slower, plainer ways they replace: HarfBuzz called
from the compiled loop against uharfbuzz's own API, the character-class table against the Unicode
properties it stands for, the one-pass font choice against the per-character fallback."""

from __future__ import annotations

import gc
import unicodedata

import numpy as np
import pytest
import regex
import uharfbuzz as hb
from hypothesis import given, settings
from hypothesis import strategies as st

from ground.errors import PixglotError
from rendering import chartables, harfbuzz, kernels
from rendering.fontstack import INHERIT, default_stack
from rendering.harfbuzz import Runs, Shaper

TEXTS = [
    ("office", None),  # an ffi ligature: fewer glyphs than code points
    ("مرحبا بالعالم 123", None),
    ("क्षत्रिय र्क कि", None),
    ("ก่ำน้ำ", "th"),
    ("直 骨 海", "ja"),
    ("直 骨 海", "zh"),
    ("Ἀθῆναι", None),
    ("ǖ̃̄x", None),  # stacked marks
]


def spans_of(stack, texts):
    """One run per text, in the font the stack gives its first character; run i takes language i."""
    cps = chartables.codepoints("".join(t for t, _ in texts))
    spans, offset = [], 0
    for i, (text, _) in enumerate(texts):
        font = int(stack._first_font[ord(text[0])])
        rtl = int(regex.match(r"\p{Bidi_Class=AL}", text[0]) is not None)
        spans.append((offset, len(text), 0, len(text), rtl, font, i))
        offset += len(text)
    return cps, np.array(spans, np.int64)


@pytest.mark.parametrize("capacity", [None, 1])  # 1: the output grows run after run
def test_compiled_shaping_loop_equals_uharfbuzz(capacity):
    stack, size = default_stack(), 11
    cps, spans = spans_of(stack, TEXTS)
    glyphs = Shaper(stack, size).shape(Runs(cps, spans, [lang for _, lang in TEXTS]), capacity)
    run_lengths = np.diff(glyphs.run_start)
    assert glyphs.run_start[-1] == len(glyphs.gid)
    at = 0
    for (text, language), (*_, rtl, font, _), n in zip(TEXTS, spans, run_lengths, strict=True):
        hb_font = hb.Font(stack.fonts[font].hb_face)
        hb_font.scale = (size * 64, size * 64)
        buffer = hb.Buffer()
        buffer.add_str(text)
        buffer.direction = "rtl" if rtl else "ltr"
        buffer.guess_segment_properties()
        if language:
            buffer.language = language
        hb.shape(hb_font, buffer)
        expected = [
            (i.codepoint, i.cluster, p.x_advance, p.x_offset, p.y_offset)
            for i, p in zip(buffer.glyph_infos, buffer.glyph_positions, strict=True)
        ]
        got = np.stack(
            [glyphs.gid, glyphs.cluster, glyphs.advance, glyphs.x_offset, glyphs.y_offset], axis=1
        )[at : at + n]
        assert [tuple(row) for row in got.tolist()] == expected, text
        at += n
    assert run_lengths[0] < len("office")  # the ligature formed: shaping really ran


def test_class_table_agrees_with_the_unicode_properties_it_stands_for():
    table = chartables.class_table()
    kana_hangul = regex.compile(r"[\p{Hiragana}\p{Katakana}\p{Hangul}]")
    kana, hangul = regex.compile(r"[\p{Hiragana}\p{Katakana}]"), regex.compile(r"\p{Hangul}")
    thai = regex.compile(r"\p{Script=Thai}")
    for cp in range(0x10000):
        c, kinds = chr(cp), int(table[cp])
        if kana_hangul.match(c):
            assert kinds & chartables.CJK, hex(cp)  # the CJK face's language can be guessed
        guessed = "ja" if kana.match(c) else "ko" if hangul.match(c) else None
        assert chartables.guessed_language(kinds) == guessed, hex(cp)
        if unicodedata.bidirectional(c) in ("R", "AL", "RLE", "RLO", "RLI"):
            assert kinds & chartables.MAYBE_RTL, hex(cp)  # never skips the bidi algorithm wrongly
        if thai.match(c):
            assert kinds & chartables.NO_SPACE, hex(cp)
    assert table[ord("a")] == 0 and table[ord("Ж")] == 0 and table[ord("क")] == 0
    assert table[0xFE0F] == chartables.EMOJI_SELECTOR
    assert table[ord("漢")] == chartables.CJK | chartables.NO_SPACE


TEXTS_FOR_FONTS = [
    "hello world",
    "hello мир",  # two fonts? Latin and Cyrillic share one
    "مرحبا hello",  # Arabic and Latin: mixed
    "123 456",  # digits only: no font of its own
    "漢字 かな",
    "👍🏽 ok",
    "x\U000e0001",
    "a\u0301b",
    "\u0378abc",  # unassigned: not covered
    "❤️ love",
]


def test_one_pass_font_choice_equals_the_per_character_fallback():
    stack = default_stack()
    cps = chartables.codepoints("".join(TEXTS_FOR_FONTS))
    starts = np.cumsum([0] + [len(t) for t in TEXTS_FOR_FONTS])
    kinds, first, covered = stack.text_facts(cps, starts)
    assert first[2] == kernels.MIXED and first[3] == INHERIT
    assert first[0] == first[1] != kernels.MIXED  # Cyrillic is in the Latin face
    for t in range(len(TEXTS_FOR_FONTS)):
        bits = [i for i in range(len(stack.fonts)) if covered[t] >> i & 1]
        assert bits == [
            i for i in range(len(stack.fonts)) if stack.covers(i, cps[starts[t] : starts[t + 1]]).all()
        ]
    for language in (None, "ja", "zh", "ko"):
        single = stack.single_fonts(
            first, covered, kinds, np.zeros(len(TEXTS_FOR_FONTS), np.int64), [language]
        )
        for t, text in enumerate(TEXTS_FOR_FONTS):
            fonts, missing = stack.assign(chartables.codepoints(text), language)
            if single[t] >= 0:
                assert fonts.tolist() == [single[t]] * len(text) and not missing.any(), (text, language)
        # The common texts take the one-font path; mixed scripts and U+FE0F do not.
        assert (single[[0, 1, 4, 7]] >= 0).all() and (single[[2, 5, 8, 9]] == -1).all(), language


# Letters of scripts with fonts of their own, characters that take their neighbours' font (space,
# digits, punctuation, a combining mark), emoji with and without U+FE0F, and code points no font has.
FONT_ALPHABET = "aZ мЖ αΩ שׁ مر क्ष ก่ 漢字 かな 한글 12 .,!?\u0301 ❤\ufe0f👍🏽 \u0378\ue000\t"


@settings(max_examples=200, deadline=None)  # the first example loads the tables
@given(
    st.lists(st.text(FONT_ALPHABET, max_size=8), min_size=1, max_size=6), st.sampled_from([None, "ja", "ko"])
)
def test_font_facts_of_any_texts_are_those_of_their_characters(texts, language):
    stack = default_stack()
    cps = chartables.codepoints("".join(texts))
    starts = np.cumsum([0] + [len(t) for t in texts])
    kinds, first, covered = stack.text_facts(cps, starts)
    assert len(kinds) == len(first) == len(covered) == len(texts)
    single = stack.single_fonts(first, covered, kinds, np.zeros(len(texts), np.int64), [language])
    for t, text in enumerate(texts):
        mine = cps[starts[t] : starts[t + 1]]
        assert kinds[t] == np.bitwise_or.reduce(chartables.class_table()[mine], initial=0)
        for i in range(len(stack.fonts)):
            assert bool(covered[t] >> i & 1) == stack.covers(i, mine).all(), (text, i)
        strong = list(dict.fromkeys(f for f in stack._strong_font[mine].tolist() if f != INHERIT))
        assert first[t] == (INHERIT if not strong else strong[0] if len(strong) == 1 else kernels.MIXED)
        if single[t] >= 0:
            fonts, missing = stack.assign(mine, language)
            assert fonts.tolist() == [single[t]] * len(text) and not missing.any(), (text, language)


def test_a_shaper_frees_every_font_it_opened(monkeypatch):
    freed = []
    destroy = harfbuzz._font_destroy
    monkeypatch.setattr(harfbuzz, "_font_destroy", lambda font: (freed.append(font), destroy(font)))
    shaper = Shaper(default_stack(), 11)
    opened = shaper._addresses.tolist()
    del shaper
    gc.collect()
    assert len(opened) == len(default_stack().fonts) and sorted(freed) == sorted(opened)


def test_a_harfbuzz_that_shapes_unlike_uharfbuzz_is_refused_when_a_shaper_starts(monkeypatch):
    Shaper(default_stack(), 11)  # the installed one agrees
    real = harfbuzz._shape_runs

    def misread(*args):  # as a library whose glyph structs are laid out otherwise would be read
        (gid, *rest), run_start = real(*args)
        return (gid + 1, *rest), run_start

    monkeypatch.setattr(harfbuzz, "_shape_runs", misread)
    with pytest.raises(
        PixglotError, match=rf"uharfbuzz {hb.__version__}: .*'office'.*version pyproject.toml pins"
    ):
        Shaper(default_stack(), 11)
