"""Text before shaping: the normalisation policy, grapheme clusters, bidi levels and break opportunities.

Normalisation policy (the same for training and search):
- NFC; ZWJ, ZWNJ and variation selectors are kept (they change shaping and emoji).
- All white space (tabs, newlines, NBSP, ideographic space...) becomes one ASCII space; runs of it
  collapse to one, and leading or trailing space is dropped.
- Other control characters are removed; lone surrogates become U+FFFD. Both are reported.
- Unassigned code points are kept and, having no glyph, reported as missing.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import regex
from bidi.algorithm import (
    X9_REMOVED,
    explicit_embed_and_overrides,
    get_base_level,
    get_embedding_levels,
    get_empty_storage,
    resolve_implicit_levels,
    resolve_neutral_types,
    resolve_weak_types,
)

_SPACES = regex.compile(r"\s+")
_NOT_ONE_SPACE = regex.compile(r"[^\S ]|  |\A | \Z")  # white space that normalising would change
# LRI, RLI, FSI, PDI -> LRE, RLE, LRE, PDF (same length, so levels still line up with the text).
_ISOLATES_AS_EMBEDDINGS = str.maketrans("\u2066\u2067\u2068\u2069", "\u202a\u202b\u202a\u202c")
_CONTROLS = regex.compile(r"[\p{Cc}\p{Cs}]")
_GRAPHEME = regex.compile(r"\X")
_STRONG_LTR_OR_NUMBER = regex.compile(
    r"[\p{Bidi_Class=L}\p{Bidi_Class=EN}\p{Bidi_Class=AN}\p{Bidi_Class=LRE}"
    r"\p{Bidi_Class=LRO}\p{Bidi_Class=LRI}\p{Bidi_Class=FSI}]"
)


def normalize(text: str) -> tuple[str, list[str]]:
    """The text as the renderer draws it, and the characters it removed or replaced."""
    # White space is Unicode's (`\s` of `regex`), everywhere: Python's `str.isspace` also counts
    # U+001C..U+001F, which Unicode does not, and the two rules together kept or spaced them by chance.
    replaced = [c for c in _CONTROLS.findall(text) if not _SPACES.fullmatch(c)]
    if replaced:
        text = _CONTROLS.sub(_replacement, text)
    text = _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip(" ")
    return text, replaced


def normalize_many(texts: Sequence[str]) -> list[tuple[str, list[str]]]:
    """`normalize` of each text. Texts already in normal form, nearly all of them, are recognised by
    one check of all of them joined by spaces (a space never composes or reorders with its
    neighbours), which costs a tenth of normalising each."""
    joined = " ".join(texts)
    if not (_CONTROLS.search(joined) or _NOT_ONE_SPACE.search(joined)) and unicodedata.is_normalized(
        "NFC", joined
    ):
        return [(text, []) for text in texts]
    return [normalize(text) for text in texts]


def _replacement(match: regex.Match) -> str:
    c = match[0]
    if _SPACES.fullmatch(c):
        return " "
    return "" if unicodedata.category(c) == "Cc" else "\ufffd"


def graphemes(text: str) -> list[str]:
    """Extended grapheme clusters (UAX #29): the units that are never split."""
    return _GRAPHEME.findall(text)


def bidi_levels(text: str) -> tuple[int, list[int]]:
    """Paragraph level (from the first strong character) and the resolved level of each character.
    A text without `chartables.MAYBE_RTL` characters is all level 0: callers can skip the algorithm."""
    base = get_base_level(text)
    if base == 1 and not _STRONG_LTR_OR_NUMBER.search(text):
        return 1, [1] * len(text)
    storage = get_empty_storage()
    storage["base_level"] = base
    storage["base_dir"] = "LR"[base]
    # The algorithm reads bidi classes from Python's `unicodedata` (`unicodedata.unidata_version`:
    # Unicode 14.0 in Python 3.11, 15.0 in 3.12), older than the `regex` package's tables that the
    # rest of this module reads: a code point it gives no class (unassigned in its version, whatever
    # newer tables say) would fail the algorithm, so it is neutral here. It knows embeddings but not
    # isolates (Unicode 6.3): an isolate is resolved as an embedding.
    prepared = "".join(c if unicodedata.bidirectional(c) else "\ufffd" for c in text)
    prepared = prepared.translate(_ISOLATES_AS_EMBEDDINGS)
    get_embedding_levels(prepared, storage)
    for step in (
        explicit_embed_and_overrides,
        resolve_weak_types,
        resolve_neutral_types,
        resolve_implicit_levels,
    ):
        step(storage, False)
    resolved = iter(ch["level"] for ch in storage["chars"])
    # The algorithm drops explicit embedding controls (rule X9); they take the level of what precedes them.
    levels: list[int] = []
    for c in prepared:
        if unicodedata.bidirectional(c) in X9_REMOVED:
            levels.append(levels[-1] if levels else base)
        else:
            levels.append(next(resolved))
    return base, levels


def reorder_runs(levels: list[int]) -> list[int]:
    """Visual order of runs with the given embedding levels (UAX #9 rule L2)."""
    order = list(range(len(levels)))
    if not levels:
        return order
    highest = max(levels)
    lowest_odd = min((lv for lv in levels if lv % 2), default=highest + 1)
    for level in range(highest, lowest_odd - 1, -1):
        i = 0
        while i < len(order):
            if levels[order[i]] >= level:
                j = i
                while j < len(order) and levels[order[j]] >= level:
                    j += 1
                order[i:j] = order[i:j][::-1]
                i = j
            else:
                i += 1
    return order
