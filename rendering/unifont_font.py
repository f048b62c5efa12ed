"""GNU Unifont glyphs as numpy arrays, loaded once per process.

big_vision's `render_unifont` reads two `.hex` files of Unifont 9.0.06: `unifont-9.0.06.hex` (plane 0)
and `unifont_upper-9.0.06.hex` (planes 1 and up). On Debian the plane-0 file is the `unifont`
package's /usr/share/unifont/unifont.hex (same format, a newer Unifont release). Debian ships no
upper-plane `.hex`; the same glyphs come in the `fonts-unifont` package as unifont_upper.otf, whose
outlines are unions of whole pixels, so rasterising them at 16 px gives the hex bitmaps back exactly.

PIXGLOT_UNIFONT_HEX (a list of `.hex` files separated by the OS path separator) replaces these
defaults, e.g. with the two Unifont 9.0.06 files for pixel parity with the official CLIPPO checkpoints.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ground.errors import FileFormatError, PixglotError

CELL = 16  # Unifont glyphs are 16 rows tall and 8 or 16 columns wide
BMP_END = 0x10000
CODE_SPACE = 0x110000
FONT_ENV = "PIXGLOT_UNIFONT_HEX"

_HEX_DIR = Path("/usr/share/unifont")
PLANE0_HEX_FILES = (_HEX_DIR / "unifont.hex", _HEX_DIR / "unifont.hex.gz")
UPPER_HEX_FILES = (_HEX_DIR / "unifont_upper.hex", _HEX_DIR / "unifont_upper.hex.gz")
UPPER_OTF_FILES = (Path("/usr/share/fonts/opentype/unifont/unifont_upper.otf"),)


@dataclass(frozen=True)
class Glyphs:
    """Unifont bitmaps side by side in one 16-row strip, so a line of glyph columns is one gather.

    ink[y, 16 * g + x] is 1 where glyph g has ink at row y, column x. Glyph 0 is the blank cell drawn
    for code points the font lacks; index[cp] is the glyph of code point cp (0 when absent).
    """

    ink: np.ndarray  # (16, 16 * number of glyphs) uint8
    index: np.ndarray  # (size of the code space covered,) int32

    def bitmap(self, cp: int) -> np.ndarray:
        """16 x 16 (rows x columns) bitmap drawn for code point `cp`."""
        g = int(self.index[cp]) if cp < len(self.index) else 0
        return self.ink[:, CELL * g : CELL * (g + 1)]


@dataclass(frozen=True)
class Trim:
    """Each glyph after the op's trimming: where its kept columns begin in the strip, and how many."""

    strip_start: np.ndarray  # int64, column of Glyphs.ink
    width: np.ndarray  # int64


def parse_hex(path: Path) -> dict[int, np.ndarray]:
    """Code point -> 16 x 16 uint8 bitmap (rows x columns) from a Unifont `.hex` file (plain or .gz).

    A line is `CODEPOINT:BITS`; 32 hex digits are an 8-wide glyph (one byte per row, drawn in the
    left half of the cell), 64 digits a 16-wide glyph (two bytes per row); most significant bit left.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="ascii") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise FileFormatError(path, f"cannot read Unifont hex file: {e}") from e
    by_length: dict[int, tuple[list[int], list[str]]] = {32: ([], []), 64: ([], [])}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        code, sep, bits = line.partition(":")
        try:
            cp = int(code, 16)
        except ValueError:
            cp = -1
        if not sep or not 0 <= cp < CODE_SPACE or len(bits) not in by_length:
            raise FileFormatError(path, f"line {number} is not CODEPOINT:32-or-64-HEX-DIGITS: {line[:80]!r}")
        by_length[len(bits)][0].append(cp)
        by_length[len(bits)][1].append(bits)
    glyphs: dict[int, np.ndarray] = {}
    for length, (cps, texts) in by_length.items():
        if not cps:
            continue
        try:
            raw = np.frombuffer(bytes.fromhex("".join(texts)), np.uint8)
        except ValueError as e:
            raise FileFormatError(path, f"bad hex digits in a glyph: {e}") from e
        bytes_per_row = length // 32
        bits = np.unpackbits(raw.reshape(len(cps), CELL, bytes_per_row), axis=2)
        cells = np.zeros((len(cps), CELL, CELL), np.uint8)
        cells[:, :, : 8 * bytes_per_row] = bits
        glyphs.update(zip(cps, cells, strict=True))
    return glyphs


def rasterise_pixel_font(path: Path, first: int = BMP_END) -> dict[int, np.ndarray]:
    """Code point -> 16 x 16 bitmap for code points >= `first` of a Unifont OpenType file.

    Unifont's OTF draws each pixel as a square on the 16 px grid, so FreeType's monochrome
    rasteriser at 16 px without hinting reproduces the hex bitmap. Combining marks have zero advance
    and are moved left of the origin by the converter; they are moved back by the smallest multiple
    of 8 px that puts them inside the cell. Done to plane 0's OTF, this gives the hex file's trimmed
    glyph for 96% of its combining marks; the rest sit elsewhere in their cell than in the hex file.
    """
    import freetype

    try:
        face = freetype.Face(str(path))
        face.set_pixel_sizes(0, CELL)
    except freetype.FT_Exception as e:
        raise FileFormatError(path, f"cannot read font: {e}") from e
    ascent = round(face.ascender * CELL / face.units_per_EM)  # rows above the baseline
    flags = freetype.FT_LOAD_RENDER | freetype.FT_LOAD_NO_HINTING | freetype.FT_LOAD_MONOCHROME
    glyphs: dict[int, np.ndarray] = {}
    cp, glyph_index = face.get_first_char()
    while glyph_index:
        if cp >= first:
            face.load_glyph(glyph_index, flags)
            slot = face.glyph
            bitmap = slot.bitmap
            cell = np.zeros((CELL, CELL), np.uint8)
            if bitmap.rows and bitmap.width:
                packed = np.frombuffer(bytes(bitmap.buffer), np.uint8).reshape(bitmap.rows, bitmap.pitch)
                ink = np.unpackbits(packed, axis=1)[:, : bitmap.width]
                left, top = slot.bitmap_left, ascent - slot.bitmap_top
                if slot.advance.x == 0 and left < 0:
                    shifted = left + -(left // 8) * 8
                    left = shifted if shifted + bitmap.width <= CELL else 0
                rows = slice(max(top, 0), min(top + bitmap.rows, CELL))
                cols = slice(max(left, 0), min(left + bitmap.width, CELL))
                cell[rows, cols] = ink[
                    rows.start - top : rows.stop - top, cols.start - left : cols.stop - left
                ]
            glyphs[cp] = cell
        cp, glyph_index = face.get_next_char(cp, glyph_index)
    return glyphs


def build_glyphs(bitmaps: dict[int, np.ndarray], code_space: int) -> Glyphs:
    """Pack bitmaps (code point -> rows x columns) into a Glyphs table covering [0, code_space)."""
    blank = Glyphs(np.zeros((CELL, CELL), np.uint8), np.zeros(0, np.int32))
    return extend(blank, {cp: bits for cp, bits in bitmaps.items() if cp < code_space}, code_space)


def extend(glyphs: Glyphs, bitmaps: dict[int, np.ndarray], code_space: int = CODE_SPACE) -> Glyphs:
    """`glyphs` plus `bitmaps` (code point -> rows x columns), the latter winning, over [0, code_space)."""
    cps = sorted(bitmaps)
    known = glyphs.ink.shape[1] // CELL
    added = [bitmaps[cp].astype(np.uint8) for cp in cps]
    ink = np.concatenate([glyphs.ink, *added], axis=1)
    index = np.zeros(code_space, np.int32)
    index[: len(glyphs.index)] = glyphs.index
    index[np.asarray(cps, np.int64)] = np.arange(known, known + len(cps), dtype=np.int32)
    ink.setflags(write=False)
    index.setflags(write=False)
    return Glyphs(ink, index)


def trim(glyphs: Glyphs, spacing: int, min_width: int) -> Trim:
    """The op's trimming of every glyph, from its first and last columns with ink.

    start = max(first - spacing, 0); end = max(last + spacing, start + min_width), capped at the cell;
    a glyph without ink counts first = last = 0.
    """
    ink = glyphs.ink.reshape(CELL, -1, CELL).any(axis=0)  # (glyphs, 16): column has ink
    has_ink = ink.any(axis=1)
    first = np.where(has_ink, ink.argmax(axis=1), 0)
    last = np.where(has_ink, CELL - 1 - ink[:, ::-1].argmax(axis=1), 0)
    start = np.maximum(first - spacing, 0)
    end = np.minimum(np.maximum(last + spacing, start + min_width), CELL)
    width = np.maximum(end - start, 0).astype(np.int64)
    strip_start = (CELL * np.arange(len(start)) + start).astype(np.int64)
    strip_start.setflags(write=False)
    width.setflags(write=False)
    return Trim(strip_start, width)


def _first_existing(paths: Sequence[Path]) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def _override_files() -> list[Path]:
    paths = [Path(p).expanduser() for p in os.environ.get(FONT_ENV, "").split(os.pathsep) if p]
    for path in paths:
        if not path.is_file():
            raise PixglotError(f"{FONT_ENV} names {path}, which is not a file")
    return paths


def _parse_all(paths: Sequence[Path]) -> dict[int, np.ndarray]:
    bitmaps: dict[int, np.ndarray] = {}
    for path in paths:
        bitmaps.update(parse_hex(path))
    return bitmaps


def _upper_bitmaps() -> dict[int, np.ndarray]:
    override = _override_files()
    if override:
        bitmaps = _parse_all(override)
    elif (upper_hex := _first_existing(UPPER_HEX_FILES)) is not None:
        bitmaps = parse_hex(upper_hex)
    elif (upper_otf := _first_existing(UPPER_OTF_FILES)) is not None:
        bitmaps = rasterise_pixel_font(upper_otf)
    else:
        raise PixglotError(
            "text beyond U+FFFF needs GNU Unifont's upper planes (Debian/Ubuntu package "
            f"'fonts-unifont'); install it or set {FONT_ENV}"
        )
    return {cp: bits for cp, bits in bitmaps.items() if cp >= BMP_END}


def source_files() -> list[Path]:
    """The files the glyphs come from: those PIXGLOT_UNIFONT_HEX names, or the plane 0 and upper-plane
    files found where Debian installs them."""
    override = _override_files()
    if override:
        return override
    upper = _first_existing(UPPER_HEX_FILES) or _first_existing(UPPER_OTF_FILES)
    return [p for p in (_first_existing(PLANE0_HEX_FILES), upper) if p is not None]


@lru_cache(maxsize=1)
def plane0_glyphs() -> Glyphs:
    """Glyphs of the Basic Multilingual Plane (enough for most text; loads in a fraction of a second)."""
    override = _override_files()
    if override:
        return build_glyphs(_parse_all(override), BMP_END)
    path = _first_existing(PLANE0_HEX_FILES)
    if path is None:
        raise PixglotError(
            "the unifont renderer needs GNU Unifont's unifont.hex (Debian/Ubuntu package 'unifont'); "
            f"install it or set {FONT_ENV}"
        )
    return build_glyphs(parse_hex(path), BMP_END)


@lru_cache(maxsize=1)
def all_glyphs() -> Glyphs:
    """Glyphs of every plane; loaded on the first text with a code point beyond U+FFFF."""
    return extend(plane0_glyphs(), _upper_bitmaps())


@lru_cache(maxsize=8)
def trimmed(upper_planes: bool, spacing: int, min_width: int) -> tuple[Glyphs, Trim]:
    """The glyph table (plane 0 only, or all planes) and its trimming for these settings."""
    glyphs = all_glyphs() if upper_planes else plane0_glyphs()
    return glyphs, trim(glyphs, spacing, min_width)
