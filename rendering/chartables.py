"""Per-code-point lookup tables (numpy), so the renderer classifies a whole text in a few array operations."""

from __future__ import annotations

import functools
import unicodedata

import numpy as np
import regex
from fontTools.unicodedata import Scripts

CODEPOINTS = 0x110000
# Scripts written without spaces between words: a line may break between any two of their clusters.
NO_SPACE_SCRIPTS = ("Thai", "Laoo", "Khmr", "Mymr", "Hani", "Hira", "Kana")
# Kinds of characters that send a text down a slower layout path, as bits of `class_table`: the CJK
# face depends on the language, which kana or hangul reveal; U+FE0F asks for an emoji presentation.
CJK, MAYBE_RTL, NO_SPACE, KANA, HANGUL, EMOJI_SELECTOR = 1, 2, 4, 8, 16, 32
CJK_SCRIPTS = ("Hani", "Hang", "Hira", "Kana")
# Blocks whose characters can be right-to-left, and the explicit RTL controls ([start, end) ranges):
# text without any of them is left-to-right throughout, which spares the (pure Python) bidi algorithm.
MAYBE_RTL_RANGES = (
    (0x0590, 0x0900),
    (0xFB1D, 0xFE00),
    (0xFE70, 0xFF00),
    (0x10800, 0x11000),
    (0x1E800, 0x1F000),
    (0x200F, 0x2010),
    (0x202A, 0x202F),
    (0x2066, 0x206A),
)
# Scripts that take the script of the text around them (spaces, digits, punctuation, combining marks).
SHARED_SCRIPTS = ("Zyyy", "Zinh")
# A line never starts with closing brackets or quotes, commas or full stops.
NO_BREAK_BEFORE = ("Pe", "Pf", "Po")


@functools.lru_cache(maxsize=1)
def _scripts() -> tuple[np.ndarray, list[str]]:
    names = sorted(set(Scripts.VALUES))
    index = {name: i for i, name in enumerate(names)}
    starts = np.asarray(Scripts.RANGES + [CODEPOINTS])
    values = np.asarray([index[v] for v in Scripts.VALUES], np.uint8)
    return np.repeat(values, np.diff(starts)), names


def _script_mask(wanted: tuple[str, ...]) -> np.ndarray:
    table, names = _scripts()
    return np.isin(table, [names.index(s) for s in wanted if s in names])


@functools.lru_cache(maxsize=1)
def shared_script() -> np.ndarray:
    """Common and Inherited code points, less pictographs: an emoji is text of its own, not punctuation."""
    return _script_mask(SHARED_SCRIPTS) & ~_property_mask(r"\p{Extended_Pictographic}")


@functools.lru_cache(maxsize=1)
def emoji_presentation() -> np.ndarray:
    """Code points drawn as emoji by default (Emoji_Presentation=Yes, regional indicators included)."""
    return _property_mask(r"\p{Emoji_Presentation}")


# Every emoji code point lies in these blocks; scanning only them keeps the tables quick to build.
_EMOJI_BLOCKS = ((0x0000, 0x0100), (0x2000, 0x3400), (0x1F000, 0x1FC00))


def _property_mask(pattern: str) -> np.ndarray:
    match = regex.compile(pattern).match
    table = np.zeros(CODEPOINTS, bool)
    for lo, hi in _EMOJI_BLOCKS:
        table[lo:hi] = [match(chr(c)) is not None for c in range(lo, hi)]
    return table


@functools.lru_cache(maxsize=1)
def no_space_script() -> np.ndarray:
    return _script_mask(NO_SPACE_SCRIPTS)


@functools.lru_cache(maxsize=1)
def no_break_before() -> np.ndarray:
    # Punctuation outside the first two planes is too rare to matter for breaking.
    table = np.zeros(CODEPOINTS, bool)
    table[:0x20000] = [unicodedata.category(chr(c)) in NO_BREAK_BEFORE for c in range(0x20000)]
    return table


@functools.lru_cache(maxsize=1)
def class_table() -> np.ndarray:
    """Per code point, its bits of CJK, MAYBE_RTL, NO_SPACE, KANA, HANGUL and EMOJI_SELECTOR
    (`kernels.text_facts` ORs them over each text of a batch)."""
    table = np.where(_script_mask(CJK_SCRIPTS), CJK, 0).astype(np.uint8)
    for lo, hi in MAYBE_RTL_RANGES:
        table[lo:hi] |= MAYBE_RTL
    table[no_space_script()] |= NO_SPACE
    table[_script_mask(("Hira", "Kana"))] |= KANA
    table[_script_mask(("Hang",))] |= HANGUL
    table[0xFE0F] |= EMOJI_SELECTOR
    return table


def guessed_language(kinds: int) -> str | None:
    """A CJK language hint from a text's `class_table` bits: kana means Japanese, hangul Korean."""
    if kinds & KANA:
        return "ja"
    return "ko" if kinds & HANGUL else None


def codepoints(text: str) -> np.ndarray:
    """The code points of `text` as a uint32 array, UTF-32 as HarfBuzz reads it (lone surrogates are
    already gone after normalising)."""
    return np.frombuffer(text.encode("utf-32-le"), np.uint32)
