"""Glyph bitmaps from FreeType (colour emoji from their PNGs), cached as sparse ink in one atlas."""

from __future__ import annotations

import io
import threading

import freetype
import numpy as np
import uharfbuzz as hb
from PIL import Image

from rendering import kernels
from rendering.fontstack import FontStack, default_stack

# Unhinted outlines: the pixels then depend on the font file alone, not on the FreeType build's hinter.
_LOAD_FLAGS = freetype.FT_LOAD_NO_HINTING | freetype.FT_LOAD_RENDER
_IDENTITY = freetype.Matrix(0x10000, 0, 0, 0x10000)
_EMPTY = (np.zeros((0, 0), np.uint8), 0, 0)
NO_INK = 1 << 30


class GlyphAtlas:
    """Rasterised glyphs keyed by (font, glyph id, subpixel phase), one per process.

    Each glyph is stored as its inked pixels only: flat offsets into a buffer `stride` pixels wide,
    relative to the glyph origin, and their darkness, with its ink's top and bottom rows relative to
    the baseline and its left and right columns relative to the origin (NO_INK and -NO_INK for a
    glyph without ink). `ink` holds them as arrays for the compiled drawing loops.
    """

    subpixel = 4  # horizontal positions are kept to a quarter pixel

    def __init__(self, font_size: int, stride: int, stack: FontStack | None = None):
        self.font_size = font_size
        self.stride = stride
        self.stack = stack or default_stack()
        self._hb_fonts: dict[int, hb.Font] = {}
        self._faces: dict[int, freetype.Face] = {}
        # The rasterised glyphs' keys, sorted, and their slots.
        self._index = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        self._lock = threading.Lock()
        self._offsets = np.zeros(0, np.int64)
        self._values = np.zeros(0, np.int32)
        self._used = 0
        self._start: list[int] = []
        self._size: list[int] = []
        self._top: list[int] = []
        self._bottom: list[int] = []
        self._left: list[int] = []
        self._right: list[int] = []
        self._ink: kernels.Ink | None = None  # built again after each new glyph

    def hb_font(self, index: int) -> hb.Font:
        font = self._hb_fonts.get(index)
        if font is None:
            font = hb.Font(self.stack.fonts[index].hb_face)
            font.scale = (self.font_size * 64, self.font_size * 64)  # positions in 26.6 pixels
            self._hb_fonts[index] = font
        return font

    def slots(self, keys: np.ndarray) -> np.ndarray:
        """The atlas slots of glyphs given by `kernels.glyph_key`, rasterising those not seen yet.
        Looked up by a compiled binary search over the sorted keys: one call for a batch's glyphs.
        Threads may share an atlas: new glyphs are stored under a lock, and the sorted keys and
        their slots are replaced together, so a lookup never pairs one's keys with another's slots."""
        slots, missing = kernels.lookup(*self._index, keys)
        if not missing:
            return slots
        with self._lock:
            keys_sorted, slots_sorted = self._index  # another thread may have stored some meanwhile
            slots, missing = kernels.lookup(keys_sorted, slots_sorted, keys)
            if missing:
                new = np.unique(keys[slots < 0])
                stored = [self._store(self._rasterise(*kernels.split_glyph_key(key))) for key in new.tolist()]
                at = np.searchsorted(keys_sorted, new)
                self._index = np.insert(keys_sorted, at, new), np.insert(slots_sorted, at, stored)
            return kernels.lookup(*self._index, keys)[0]

    @property
    def ink(self) -> kernels.Ink:
        """The ink of every glyph rasterised so far, as the drawing loops read it."""
        if self._ink is None:
            per_slot = (self._start, self._size, self._top, self._bottom, self._left, self._right)
            self._ink = kernels.Ink(*(np.asarray(t, np.int64) for t in per_slot), self._offsets, self._values)
        return self._ink

    def composite(
        self, slots: np.ndarray, x: np.ndarray, y: np.ndarray, shape: tuple[int, int]
    ) -> np.ndarray:
        """An int32 darkness buffer of `shape` (`stride` wide) holding the glyphs' ink, glyph i's origin
        at (x[i], y[i]); ink that would fall outside the buffer is dropped."""
        out = np.zeros(shape, np.int32)
        lo, hi = np.zeros(len(slots), np.int64), np.full(len(slots), out.size)
        kernels.composite(slots, x, y, lo, hi, self.ink, out)
        return out

    def _store(self, ink: tuple[np.ndarray, int, int]) -> int:
        """Append a glyph bitmap (darkness, left, top) and return its slot."""
        darkness, left, top = ink
        rows, cols = np.nonzero(darkness)
        n = len(rows)
        if self._used + n > len(self._offsets):
            capacity = max(2 * len(self._offsets), self._used + n, 4096)
            self._offsets, self._values = (
                np.resize(self._offsets, capacity),
                np.resize(self._values, capacity),
            )
        span = slice(self._used, self._used + n)
        self._offsets[span] = (rows - top) * self.stride + cols + left
        self._values[span] = darkness[rows, cols]
        self._start.append(self._used)
        self._size.append(n)
        # A glyph without ink reaches nowhere: it never sets a line's ink extent.
        self._top.append(int(rows.min()) - top if n else NO_INK)
        self._bottom.append(int(rows.max()) + 1 - top if n else -NO_INK)
        self._left.append(int(cols.min()) + left if n else NO_INK)
        self._right.append(int(cols.max()) + 1 + left if n else -NO_INK)
        self._used += n
        self._ink = None
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
