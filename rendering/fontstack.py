"""The pinned font stack: which font draws which grapheme cluster, by cmap coverage (fontTools)."""

from __future__ import annotations

import functools
import hashlib
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import uharfbuzz as hb
from fontTools.ttLib import TTFont

from ground.errors import PixglotError
from rendering import kernels
from rendering.chartables import CODEPOINTS, EMOJI_SELECTOR, class_table, emoji_presentation, shared_script

STACK_FILE = Path(__file__).with_name("fonts.toml")
# Directories searched before fonts.toml's own, for machines whose fonts live elsewhere (macOS, a
# user's font folder, a container without Debian's packages); same files, so the same pixels.
FONT_PATH_ENV = "PIXGLOT_FONT_PATH"

# Characters the shaper consumes without a glyph of their own; a font need not map them to cover a cluster.
_IGNORABLE = frozenset(
    [0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x034F, 0x20E3]
    + list(range(0xFE00, 0xFE10))
    + list(range(0xE0100, 0xE01F0))
    + list(range(0xE0020, 0xE0080))  # emoji tag sequences (subdivision flags)
)
IGNORABLE = np.zeros(CODEPOINTS, bool)
IGNORABLE[list(_IGNORABLE)] = True
NO_FONT = 255
INHERIT = 254
# A text's coverage is one 64-bit mask, a bit per font (`FontStack.text_facts`).
MAX_FONTS = 63


class FontStackError(PixglotError):
    pass


@dataclass
class StackFont:
    id: str
    path: Path
    index: int = 0
    color: bool = False
    languages: tuple[str, ...] = ()
    cmap: frozenset[int] = field(default_factory=frozenset, repr=False)
    upem: int = 1000
    ascent: int = 0
    descent: int = 0

    @functools.cached_property
    def hb_face(self) -> hb.Face:
        return hb.Face(hb.Blob.from_file_path(str(self.path)), self.index)

    @functools.cached_property
    def cmap_array(self) -> np.ndarray:
        return np.array(sorted(self.cmap), np.int64)

    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def _find(file: str, search_paths: list[Path]) -> Path | None:
    for directory in search_paths:
        candidate = directory / file
        if candidate.is_file():
            return candidate
    return None


def _load_font(entry: dict, path: Path) -> StackFont:
    # Closed once its tables are read: HarfBuzz opens the file itself when it shapes.
    with TTFont(path, fontNumber=entry.get("index", 0), lazy=True) as font:
        return StackFont(
            id=entry["id"],
            path=path,
            index=entry.get("index", 0),
            color=entry.get("color", False),
            languages=tuple(entry.get("languages", ())),
            cmap=frozenset(font.getBestCmap() or {}),
            upem=font["head"].unitsPerEm,
            ascent=font["hhea"].ascent,
            descent=-font["hhea"].descent,
        )


class FontStack:
    """The fonts of fonts.toml, in order, with fallback by coverage and the CJK face by language."""

    def __init__(self, fonts: list[StackFont], missing: list[str]):
        if not fonts:
            raise FontStackError(f"no font of {STACK_FILE.name} was found; install fonts-noto-core")
        self.fonts = fonts
        self.missing_files = missing
        self.emoji = next((i for i, f in enumerate(fonts) if f.color), None)
        if len(fonts) > MAX_FONTS:
            raise FontStackError(f"at most {MAX_FONTS} fonts fit in a stack; this one has {len(fonts)}")

    @classmethod
    def from_file(cls, path: Path = STACK_FILE) -> FontStack:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
        extra = [Path(p).expanduser() for p in os.environ.get(FONT_PATH_ENV, "").split(os.pathsep) if p]
        search = extra + [Path(p) for p in spec["search_paths"]]
        fonts, missing = [], []
        for entry in spec["fonts"]:
            found = _find(entry["file"], search)
            if found is None:
                missing.append(entry["file"])
            else:
                fonts.append(_load_font(entry, found))
        return cls(fonts, missing)

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one stack per process, lives as long as it
    def order(self, language: str | None) -> tuple[int, ...]:
        """Font indices in fallback order; the CJK face of `language` comes before the other CJK faces."""
        order = list(range(len(self.fonts)))
        if language:
            lang = language.lower().replace("_", "-")
            preferred = [i for i, f in enumerate(self.fonts) if lang in f.languages]
            if not preferred:
                base = lang.split("-")[0]
                preferred = [i for i, f in enumerate(self.fonts) if base in f.languages]
            if preferred:
                first_cjk = min(i for i, f in enumerate(self.fonts) if f.languages)
                rest = [i for i in order if i not in preferred]
                order = rest[:first_cjk] + preferred + rest[first_cjk:]
        return tuple(order)

    @functools.cached_property
    def _first_font(self) -> np.ndarray:
        """Per code point, the first font in stack order that maps it (NO_FONT if none)."""
        table = np.full(CODEPOINTS, NO_FONT, np.uint8)
        for i in reversed(range(len(self.fonts))):
            table[self.fonts[i].cmap_array] = i
        if self.emoji is not None:
            # Emoji_Presentation characters are emoji first, even where a text font also maps them.
            emoji = np.zeros(CODEPOINTS, bool)
            emoji[self.fonts[self.emoji].cmap_array] = True
            table[emoji & emoji_presentation()] = self.emoji
        return table

    @functools.cached_property
    def _strong_font(self) -> np.ndarray:
        """`_first_font`, with INHERIT for code points that take the font of the text around them."""
        table = self._first_font.copy()
        table[shared_script()] = INHERIT
        return table

    @functools.cached_property
    def _cjk(self) -> list[int]:
        return [i for i, f in enumerate(self.fonts) if f.languages]

    @functools.cached_property
    def _is_cjk(self) -> np.ndarray:
        return np.array([bool(f.languages) for f in self.fonts])

    @functools.cached_property
    def _default_cjk(self) -> int:
        """The CJK face of a text with no language; -1 without CJK faces."""
        return min(self._cjk, default=-1)

    def covers(self, font: int, cps: np.ndarray) -> np.ndarray:
        cmap = self.fonts[font].cmap_array
        found = np.minimum(np.searchsorted(cmap, cps), len(cmap) - 1)
        return (cmap[found] == cps) | IGNORABLE[cps]

    @functools.cached_property
    def _cover(self) -> np.ndarray:
        """Per code point, a bit for each font that maps it (all of them for the ignorable ones)."""
        table = np.zeros(CODEPOINTS, np.int64)
        for i, font in enumerate(self.fonts):
            table[font.cmap_array] |= 1 << i
        table[IGNORABLE] = (1 << len(self.fonts)) - 1
        return table

    def text_facts(self, cps: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each text cps[starts[t]:starts[t + 1]] of a batch, in one compiled pass: its bits of
        `chartables.class_table`, the one font its characters take first (INHERIT if none does,
        kernels.MIXED if they want several) and the fonts that cover all of it, a bit each."""
        return kernels.text_facts(cps, starts, class_table(), self._strong_font, self._cover, INHERIT)

    def single_fonts(
        self,
        first: np.ndarray,
        covered: np.ndarray,
        kinds: np.ndarray,
        language_of: np.ndarray,
        languages: Sequence[str | None],
    ) -> np.ndarray:
        """For each text of a batch (its `text_facts` and its language, `languages[language_of[t]]`),
        the one font that draws all of it, or -1 where `assign` must choose character by character:
        the text's first font, or the CJK face its language prefers, to which `assign` would move
        every character; it must cover the whole text, and no emoji presentation may be asked of
        another font."""
        preferred = np.array([self._preferred_cjk(language) for language in languages], np.int64)
        emoji = -1 if self.emoji is None else self.emoji
        return kernels.single_fonts(
            first,
            covered,
            kinds,
            EMOJI_SELECTOR,
            preferred[language_of],
            self._is_cjk,
            self._default_cjk,
            emoji,
        )

    @functools.lru_cache(maxsize=64)  # noqa: B019 - as `order`
    def _preferred_cjk(self, language: str | None) -> int:
        """The CJK face `language` puts first; -1 without CJK faces."""
        return next((i for i in self.order(language) if self.fonts[i].languages), -1)

    def assign(self, cps: np.ndarray, language: str | None) -> tuple[np.ndarray, np.ndarray]:
        """The font index that draws each code point, and a mask of those no font in the stack has.

        Spaces, digits, punctuation and marks take the font of the text before them (after them at the
        start) when it has them, so that a run keeps its shaping context (Arabic joining, Indic reordering).
        """
        fonts = self._first_font[cps].astype(np.int64)
        preferred = self._preferred_cjk(language)
        if preferred >= 0 and preferred != self._default_cjk:
            switch = np.isin(fonts, self._cjk)
            switch[switch] = self.covers(preferred, cps[switch])
            fonts[switch] = preferred
        shared = shared_script()[cps]
        if self.emoji is not None:
            # A variation selector 16 asks for the emoji presentation of the character before it
            # (a keycap digit too, which is otherwise a shared character).
            emoji = np.zeros(len(cps), bool)
            emoji[:-1] = cps[1:] == 0xFE0F
            emoji &= self.covers(self.emoji, cps)
            fonts[emoji] = self.emoji
            shared &= ~emoji
        positions = np.arange(len(cps))
        before = np.maximum.accumulate(np.where(shared, -1, positions))
        after = np.minimum.accumulate(np.where(shared, len(cps), positions)[::-1])[::-1]
        source = np.where(before >= 0, before, after)
        inherit = shared & (source < len(cps))
        donors = fonts[np.minimum(source, len(cps) - 1)]
        for font in np.unique(donors[inherit]).tolist():
            if font != NO_FONT:
                take = inherit & (donors == font)
                take[take] = self.covers(font, cps[take])
                fonts[take] = font
        missing = (fonts == NO_FONT) & ~IGNORABLE[cps]
        fonts[fonts == NO_FONT] = 0
        return fonts, missing


@functools.lru_cache(maxsize=1)
def default_stack() -> FontStack:
    return FontStack.from_file()
