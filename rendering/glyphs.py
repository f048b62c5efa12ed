"""Glyph bitmaps from FreeType (colour emoji from their PNGs), cached as sparse ink in one atlas."""

from __future__ import annotations

import io
from dataclasses import dataclass

import freetype
import numpy as np
import uharfbuzz as hb
from PIL import Image

from rendering.fontstack import FontStack, default_stack

# Unhinted outlines: the pixels then depend on the font file alone, not on the FreeType build's hinter.
_LOAD_FLAGS = freetype.FT_LOAD_NO_HINTING | freetype.FT_LOAD_RENDER
_IDENTITY = freetype.Matrix(0x10000, 0, 0, 0x10000)
_EMPTY = (np.zeros((0, 0), np.uint8), 0, 0)


@dataclass
class GlyphSet:
    """Glyphs chosen for drawing: atlas slots with their ink extents (rows relative to the baseline)."""

    slots: np.ndarray
    sizes: np.ndarray
    tops: np.ndarray
    bottoms: np.ndarray

    def select(self, mask: np.ndarray) -> GlyphSet:
        return GlyphSet(self.slots[mask], self.sizes[mask], self.tops[mask], self.bottoms[mask])


class GlyphAtlas:
    """Rasterised glyphs keyed by (font, glyph id, subpixel phase), one per process.

    Each glyph is stored as its inked pixels only (row, column, darkness) in flat growing arrays, so
    drawing a whole canvas is one gather and one `bincount`, whatever the number of glyphs.
    """

    subpixel = 4  # horizontal positions are kept to a quarter pixel

    def __init__(self, font_size: int, stack: FontStack | None = None):
        self.font_size = font_size
        self.stack = stack or default_stack()
        self._hb_fonts: dict[int, hb.Font] = {}
        self._faces: dict[int, freetype.Face] = {}
        self._slots: dict[int, int] = {}
        self._rows = np.zeros(0, np.int64)
        self._cols = np.zeros(0, np.int64)
        self._values = np.zeros(0, np.float64)
        self._used = 0
        self._start: list[int] = []
        self._size: list[int] = []
        self._top: list[int] = []
        self._bottom: list[int] = []
        self._arrays: tuple[np.ndarray, ...] | None = None

    def hb_font(self, index: int) -> hb.Font:
        font = self._hb_fonts.get(index)
        if font is None:
            font = hb.Font(self.stack.fonts[index].hb_face)
            font.scale = (self.font_size * 64, self.font_size * 64)  # positions in 26.6 pixels
            self._hb_fonts[index] = font
        return font

    def lookup(self, fonts: np.ndarray, gids: np.ndarray, phases: np.ndarray) -> GlyphSet:
        keys = (fonts << 24) | (gids << 3) | phases
        unique, inverse = np.unique(keys, return_inverse=True)
        slots = np.asarray([self._slot(k) for k in unique.tolist()], np.int64)[inverse]
        start, size, top, bottom = self._tables()
        return GlyphSet(slots, size[slots], top[slots], bottom[slots])

    def composite(self, glyphs: GlyphSet, x: np.ndarray, y: np.ndarray, buffer: np.ndarray) -> None:
        """Add the glyphs' ink to a 2-D float64 darkness buffer, glyph i with its origin at (x[i], y[i])."""
        sizes = glyphs.sizes
        total = int(sizes.sum())
        if not total:
            return
        start = self._tables()[0][glyphs.slots]
        owner = np.repeat(np.arange(len(sizes)), sizes)
        index = np.arange(total) + np.repeat(start - (np.cumsum(sizes) - sizes), sizes)
        rows = self._rows[index] + y[owner]
        cols = self._cols[index] + x[owner]
        height, width = buffer.shape
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        flat = rows[inside] * width + cols[inside]
        buffer += np.bincount(flat, weights=self._values[index][inside], minlength=buffer.size).reshape(
            buffer.shape
        )

    def _tables(self) -> tuple[np.ndarray, ...]:
        if self._arrays is None:
            self._arrays = tuple(
                np.asarray(t, np.int64) for t in (self._start, self._size, self._top, self._bottom)
            )
        return self._arrays

    def _slot(self, key: int) -> int:
        slot = self._slots.get(key)
        if slot is None:
            font, gid, phase = key >> 24, (key >> 3) & 0x1FFFFF, key & 7
            slot = self._slots[key] = self._store(self._rasterise(font, gid, phase))
        return slot

    def _store(self, ink: tuple[np.ndarray, int, int]) -> int:
        """Append a glyph bitmap (darkness, left, top) and return its slot."""
        darkness, left, top = ink
        rows, cols = np.nonzero(darkness)
        n = len(rows)
        if self._used + n > len(self._rows):
            capacity = max(2 * len(self._rows), self._used + n, 4096)
            self._rows, self._cols, self._values = (
                np.resize(a, capacity) for a in (self._rows, self._cols, self._values)
            )
        span = slice(self._used, self._used + n)
        self._rows[span] = rows - top
        self._cols[span] = cols + left
        self._values[span] = darkness[rows, cols]
        self._start.append(self._used)
        self._size.append(n)
        self._top.append(int(rows.min()) - top if n else 0)
        self._bottom.append(int(rows.max()) + 1 - top if n else 0)
        self._used += n
        self._arrays = None
        return len(self._size) - 1

    def _face(self, index: int) -> freetype.Face:
        face = self._faces.get(index)
        if face is None:
            spec = self.stack.fonts[index]
            face = freetype.Face(str(spec.path), spec.index)
            face.set_pixel_sizes(0, self.font_size)
            self._faces[index] = face
        return face

    def _rasterise(self, font: int, gid: int, phase: int) -> tuple[np.ndarray, int, int]:
        if self.stack.fonts[font].color:
            return self._rasterise_color(font, gid)
        face = self._face(font)
        face.set_transform(_IDENTITY, freetype.Vector(phase * 64 // self.subpixel, 0))
        face.load_glyph(gid, _LOAD_FLAGS)
        slot = face.glyph
        bitmap = slot.bitmap
        if bitmap.rows == 0 or bitmap.width == 0:
            return _EMPTY
        pixels = np.frombuffer(bytes(bitmap.buffer), np.uint8).reshape(bitmap.rows, bitmap.pitch)[
            :, : bitmap.width
        ]
        return pixels, slot.bitmap_left, slot.bitmap_top

    def _rasterise_color(self, font: int, gid: int) -> tuple[np.ndarray, int, int]:
        """A colour emoji in gray: its darkness over a white ground, its PNG scaled to the glyph's extents."""
        hb_font = self.hb_font(font)
        png = hb_font.get_glyph_color_png(gid)
        extents = hb_font.get_glyph_extents(gid)
        if png is None or not len(png.data) or extents is None:
            return _EMPTY
        rgba = np.asarray(Image.open(io.BytesIO(png.data)).convert("RGBA"), np.float32)
        luminance = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        darkness = rgba[..., 3] * (255.0 - luminance) / 255.0
        size = (max(1, round(extents.width / 64)), max(1, round(-extents.height / 64)))
        small = np.asarray(Image.fromarray(darkness).resize(size, Image.Resampling.BOX))
        return np.rint(small).astype(np.uint8), round(extents.x_bearing / 64), round(extents.y_bearing / 64)
