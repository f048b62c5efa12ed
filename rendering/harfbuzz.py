"""HarfBuzz shaping with the results read as arrays.

uharfbuzz hands a shaped buffer back as one Python object per glyph, and reading five fields off
them cost the renderer more than shaping itself (about 0.4 µs per glyph, 45 µs for a 90-glyph
caption). The HarfBuzz that uharfbuzz ships exports its C API, so this module calls that same
library through ctypes and copies each buffer's glyph infos and positions out as raw bytes: the
same shaping code and results, a few calls per run instead of a few per glyph.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import uharfbuzz._harfbuzz

from rendering.fontstack import FontStack

_LIB = ctypes.CDLL(uharfbuzz._harfbuzz.__file__)
_P = ctypes.c_void_p
_LTR, _RTL = 4, 5  # hb_direction_t
# hb_glyph_info_t is five 32-bit fields (codepoint, mask, cluster, 2 private), hb_glyph_position_t
# five too (x_advance, y_advance, x_offset, y_offset, 1 private): HarfBuzz's stable public ABI.
_FIELDS = 5


def _c(name: str, result: type | None, *args: type) -> ctypes._CFuncPtr:
    function = getattr(_LIB, name)
    function.restype, function.argtypes = result, list(args)
    return function


_blob_from_file = _c("hb_blob_create_from_file_or_fail", _P, ctypes.c_char_p)
_blob_destroy = _c("hb_blob_destroy", None, _P)
_face_create = _c("hb_face_create", _P, _P, ctypes.c_uint)
_face_destroy = _c("hb_face_destroy", None, _P)
_font_create = _c("hb_font_create", _P, _P)
_font_set_scale = _c("hb_font_set_scale", None, _P, ctypes.c_int, ctypes.c_int)
_font_destroy = _c("hb_font_destroy", None, _P)
_language_from_string = _c("hb_language_from_string", _P, ctypes.c_char_p, ctypes.c_int)
_buffer_create = _c("hb_buffer_create", _P)
_buffer_destroy = _c("hb_buffer_destroy", None, _P)


def _per_run(name: str, result: type | None) -> ctypes._CFuncPtr:
    """A function called for every run: without argtypes, so that ctypes passes the ready ctypes
    objects (and small ints, as C ints) it is given without converting them, half its call cost."""
    function = getattr(_LIB, name)
    function.restype = result
    return function


_buffer_clear = _per_run("hb_buffer_clear_contents", None)
_buffer_add_utf32 = _per_run("hb_buffer_add_utf32", None)  # (buffer, text, length, offset, run length)
_buffer_set_direction = _per_run("hb_buffer_set_direction", None)
_buffer_set_language = _per_run("hb_buffer_set_language", None)
_buffer_guess = _per_run("hb_buffer_guess_segment_properties", None)
_shape = _per_run("hb_shape", None)  # (font, buffer, features, feature count)
_glyph_infos = _per_run("hb_buffer_get_glyph_infos", _P)
_glyph_positions = _per_run("hb_buffer_get_glyph_positions", _P)


class Run(NamedTuple):
    """A stretch of one text in one font and direction; the whole text is context for shaping."""

    utf32: bytes  # the whole text, UTF-32LE
    start: int  # the run, as code point offsets into the text
    end: int
    rtl: bool
    font: int  # index into the font stack
    language: str | None  # BCP 47, or None to let HarfBuzz guess from the script


class Glyphs(NamedTuple):
    """Shaped glyphs of runs end to end; clusters are code point offsets into each run's text and
    positions are in 26.6 pixels."""

    gid: np.ndarray
    cluster: np.ndarray
    advance: np.ndarray
    x_offset: np.ndarray
    y_offset: np.ndarray
    run_lengths: list[int]


class Shaper:
    """Shapes runs with the fonts of a stack at one size. Safe to share between threads: each call
    has its own buffer, and HarfBuzz fonts are read-only once made."""

    def __init__(self, stack: FontStack, font_size: int):
        self.stack, self.font_size = stack, font_size
        self._fonts: dict[int, ctypes.c_void_p] = {}
        self._languages: dict[str, ctypes.c_void_p] = {}
        self._lock = threading.Lock()
        weakref.finalize(self, _destroy_fonts, self._fonts)

    def shape(self, runs: Sequence[Run]) -> Glyphs:
        infos, positions, lengths = [], [], []
        count = ctypes.c_uint()
        buf = _P(_buffer_create())
        try:
            for run in runs:
                _buffer_clear(buf)
                _buffer_add_utf32(buf, run.utf32, len(run.utf32) // 4, run.start, run.end - run.start)
                _buffer_set_direction(buf, _RTL if run.rtl else _LTR)
                _buffer_guess(buf)
                if run.language:
                    _buffer_set_language(buf, self._language(run.language))
                _shape(self._font(run.font), buf, None, 0)
                info_pointer = _glyph_infos(buf, ctypes.byref(count))
                size = count.value * _FIELDS * 4
                infos.append(ctypes.string_at(info_pointer, size))
                positions.append(ctypes.string_at(_glyph_positions(buf, None), size))
                lengths.append(count.value)
        finally:
            _buffer_destroy(buf)
        info = np.frombuffer(b"".join(infos), np.uint32).reshape(-1, _FIELDS).astype(np.int64)
        position = np.frombuffer(b"".join(positions), np.int32).reshape(-1, _FIELDS).astype(np.int64)
        return Glyphs(info[:, 0], info[:, 2], position[:, 0], position[:, 2], position[:, 3], lengths)

    def _font(self, index: int) -> ctypes.c_void_p:
        font = self._fonts.get(index)
        if font is None:
            with self._lock:
                font = self._fonts.get(index) or self._open(index)
                self._fonts[index] = font
        return font

    def _open(self, index: int) -> ctypes.c_void_p:
        spec = self.stack.fonts[index]
        blob = _blob_from_file(str(spec.path).encode())
        if not blob:
            raise FileNotFoundError(f"{spec.path}: HarfBuzz could not read this font file")
        face = _face_create(blob, spec.index)
        _blob_destroy(blob)  # the face holds its own reference, as the font holds the face's
        font = _font_create(face)
        _face_destroy(face)
        _font_set_scale(font, self.font_size * 64, self.font_size * 64)  # positions in 26.6 pixels
        return _P(font)

    def _language(self, tag: str) -> ctypes.c_void_p:
        # HarfBuzz interns languages: the pointer stays valid for the process.
        language = self._languages.get(tag)
        if language is None:
            language = self._languages[tag] = _P(_language_from_string(tag.encode(), -1))
        return language


def _destroy_fonts(fonts: dict[int, ctypes.c_void_p]) -> None:
    for font in fonts.values():
        _font_destroy(font)
