"""Per-code-point lookup tables (numpy), so the renderer classifies a whole text in a few array operations."""

from __future__ import annotations

import functools
import operator
import unicodedata

import numpy as np
import regex
from fontTools.unicodedata import Scripts

CODEPOINTS = 0x110000
# Scripts written without spaces between words: a line may break between any two of their clusters.
NO_SPACE_SCRIPTS = ("Thai", "Laoo", "Khmr", "Mymr", "Hani", "Hira", "Kana")
# Kinds of characters that send a text down a slower layout path, as bits of `layout_classes`.
CJK, MAYBE_RTL, NO_SPACE = 1, 2, 4
_CLASS_PATTERNS = (
    # The CJK face then depends on the language, which kana or hangul reveal.
    (CJK, regex.compile(r"[\p{Han}\p{Hangul}\p{Hiragana}\p{Katakana}]")),
    # Blocks whose characters can be right-to-left, and the explicit RTL controls; text without any of
    # them is left-to-right throughout, which spares the (pure Python) bidi algorithm.
    (
        MAYBE_RTL,
        regex.compile(
            "[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff\U00010800-\U00010fff\U0001e800-\U0001efff"
            "\u200f\u202a-\u202e\u2066-\u2069]"
        ),
    ),
    (NO_SPACE, regex.compile("[" + "".join(rf"\p{{Script={s}}}" for s in NO_SPACE_SCRIPTS) + "]")),
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


@functools.cache
def _char_classes(c: str) -> int:
    return sum(bit for bit, pattern in _CLASS_PATTERNS if pattern.match(c))


def layout_classes(text: str) -> int:
    """The bits CJK, MAYBE_RTL and NO_SPACE of the kinds of characters `text` has. Looked up per
    distinct character: scanning a caption with the three patterns took 11 µs."""
    return functools.reduce(operator.or_, map(_char_classes, set(text)), 0)


def codepoints(text: str) -> np.ndarray:
    """The code points of `text` as an int64 array (lone surrogates are already gone after normalising)."""
    return np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.int64)
