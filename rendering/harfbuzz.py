"""HarfBuzz shaping with the results read as arrays.

uharfbuzz hands a shaped buffer back as one Python object per glyph, and reading five fields off
them cost the renderer more than shaping itself (about 0.4 µs per glyph, 45 µs for a 90-glyph
caption). The HarfBuzz that uharfbuzz ships exports its C API, so this module calls that same
library from one compiled loop over all the runs of a batch (numba calls its C functions by name),
which copies each buffer's glyph infos and positions into one array: the same shaping code and
results, with no Python work per run or per glyph. (Called through ctypes, the ten C calls of a run
cost 4.5 µs against HarfBuzz's 1.7 µs of shaping for a short query.)
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections.abc import Sequence
from typing import NamedTuple

import llvmlite.binding
import numba
import numpy as np
import uharfbuzz
import uharfbuzz._harfbuzz
from numba import types

from ground.errors import PixglotError
from rendering.fontstack import FontStack
from rendering.jit import compiled

_LIBRARY = uharfbuzz._harfbuzz.__file__
_LIB = ctypes.CDLL(_LIBRARY)
_P = ctypes.c_void_p
_LTR, _RTL = 4, 5  # hb_direction_t
# hb_glyph_info_t is five 32-bit fields (codepoint, mask, cluster, 2 private), hb_glyph_position_t
# five too (x_advance, y_advance, x_offset, y_offset, 1 private): HarfBuzz's stable public ABI.
_FIELDS = 5


def _c(name: str, result: type | None, *args: type) -> ctypes._CFuncPtr:
    function = getattr(_LIB, name)
    function.restype, function.argtypes = result, list(args)
    return function


# Made once per font and language, from Python.
_blob_from_file = _c("hb_blob_create_from_file_or_fail", _P, ctypes.c_char_p)
_blob_destroy = _c("hb_blob_destroy", None, _P)
_face_create = _c("hb_face_create", _P, _P, ctypes.c_uint)
_face_destroy = _c("hb_face_destroy", None, _P)
_font_create = _c("hb_font_create", _P, _P)
_font_set_scale = _c("hb_font_set_scale", None, _P, ctypes.c_int, ctypes.c_int)
_font_destroy = _c("hb_font_destroy", None, _P)
_language_from_string = _c("hb_language_from_string", _P, ctypes.c_char_p, ctypes.c_int)

# Called per run from the compiled loop, by symbol name, which the JIT resolves in the library
# loaded here: unlike a ctypes function, that keeps the compiled loop cacheable on disk. Pointers
# are plain addresses (uintp), as HarfBuzz's opaque handles are.
llvmlite.binding.load_library_permanently(_LIBRARY)
_ADDRESS, _INT, _UINT = types.uintp, types.intc, types.uint32
_buffer_create = types.ExternalFunction("hb_buffer_create", _ADDRESS())
_buffer_destroy = types.ExternalFunction("hb_buffer_destroy", types.void(_ADDRESS))
_buffer_clear = types.ExternalFunction("hb_buffer_clear_contents", types.void(_ADDRESS))
# (buffer, text, text length, run offset, run length): the whole text is context for shaping
_buffer_add_utf32 = types.ExternalFunction(
    "hb_buffer_add_utf32", types.void(_ADDRESS, _ADDRESS, _INT, _UINT, _INT)
)
_buffer_set_direction = types.ExternalFunction("hb_buffer_set_direction", types.void(_ADDRESS, _INT))
_buffer_guess = types.ExternalFunction("hb_buffer_guess_segment_properties", types.void(_ADDRESS))
_buffer_set_language = types.ExternalFunction("hb_buffer_set_language", types.void(_ADDRESS, _ADDRESS))
# (font, buffer, features, feature count)
_shape = types.ExternalFunction("hb_shape", types.void(_ADDRESS, _ADDRESS, _ADDRESS, _UINT))
_glyph_infos = types.ExternalFunction(
    "hb_buffer_get_glyph_infos", types.CPointer(types.uint32)(_ADDRESS, _ADDRESS)
)
_glyph_positions = types.ExternalFunction(
    "hb_buffer_get_glyph_positions", types.CPointer(types.int32)(_ADDRESS, _ADDRESS)
)


class Runs(NamedTuple):
    """Stretches of texts, each in one font and direction, to be shaped with the whole text as context."""

    codepoints: np.ndarray  # uint32: the texts end to end
    # int64, one row per run: where its text starts in `codepoints` and its length, the run as
    # code point offsets into its text (start, end), 1 if right to left, the font's index in the
    # stack, the language's index in `languages`
    spans: np.ndarray
    languages: Sequence[str | None]  # BCP 47 tags, or None to let HarfBuzz guess from the script


class Glyphs(NamedTuple):
    """Shaped glyphs of runs end to end; clusters are code point offsets into each run's text and
    positions are in 26.6 pixels. Run r's glyphs are [run_start[r], run_start[r + 1])."""

    gid: np.ndarray
    cluster: np.ndarray
    advance: np.ndarray
    x_offset: np.ndarray
    y_offset: np.ndarray
    font: np.ndarray  # the font's index in the stack
    run: np.ndarray
    run_start: np.ndarray


class Shaper:
    """Shapes runs with the fonts of a stack at one size. Safe to share between threads: each call
    has its own buffer, and HarfBuzz fonts are read-only once made."""

    def __init__(self, stack: FontStack, font_size: int):
        self.stack, self.font_size = stack, font_size
        self._fonts: list[int] = []  # hb_font_t addresses, in stack order, as far as opened
        self._font_table = np.zeros(0, np.int64)
        self._languages: dict[str | None, int] = {None: 0}
        self._lock = threading.Lock()
        weakref.finalize(self, _destroy_fonts, self._fonts)
        self._check_against_uharfbuzz()

    def _check_against_uharfbuzz(self) -> None:
        """The compiled loop reads HarfBuzz's C structs by their layout: shape one word both ways, so
        that a uharfbuzz whose library differs from the one pinned fails here, not in the pixels."""
        word = "office"  # a ligature and kerning in the stack's first (Latin) font
        font = int(self.stack._first_font[ord(word[0])])
        spans = np.array([(0, len(word), 0, len(word), 0, font, 0)], np.int64)
        ours = self.shape(Runs(np.array([ord(c) for c in word], np.uint32), spans, [None]))
        reference = uharfbuzz.Font(self.stack.fonts[font].hb_face)
        reference.scale = (self.font_size * 64, self.font_size * 64)
        buffer = uharfbuzz.Buffer()
        buffer.add_str(word)
        buffer.guess_segment_properties()
        uharfbuzz.shape(reference, buffer)
        expected = [
            (info.codepoint, info.cluster, position.x_advance, position.x_offset, position.y_offset)
            for info, position in zip(buffer.glyph_infos, buffer.glyph_positions, strict=True)
        ]
        got = np.stack([ours.gid, ours.cluster, ours.advance, ours.x_offset, ours.y_offset], axis=1)
        if [tuple(row) for row in got.tolist()] != expected:
            raise PixglotError(
                f"uharfbuzz {uharfbuzz.__version__}: its HarfBuzz library shapes {word!r} unlike its "
                "Python API as Pixglot's compiled loop reads it; install the uharfbuzz version "
                "pyproject.toml pins"
            )

    def shape(self, runs: Runs, capacity: int | None = None) -> Glyphs:
        """`capacity`: glyphs to make room for at first (twice the code points unless given); more
        are made room for as they come."""
        languages = np.array([self._language(tag) for tag in runs.languages], np.int64)
        codepoints = np.ascontiguousarray(runs.codepoints, np.uint32)  # the loop reads it as UTF-32
        capacity = max(16, 2 * len(codepoints)) if capacity is None else capacity
        glyphs, run_start = _shape_runs(codepoints, runs.spans, self._addresses, languages, capacity)
        return Glyphs(*glyphs, run_start)

    @property
    def _addresses(self) -> np.ndarray:
        """hb_font_t addresses of all the stack's fonts, opened at first use (each maps its file).
        The table is published whole, so a thread never hands the shaping loop a partial one."""
        count = len(self.stack.fonts)
        if len(self._font_table) < count:
            with self._lock:
                if len(self._font_table) < count:
                    for index in range(len(self._fonts), count):  # after a failure, from where it stopped
                        self._fonts.append(self._open(index))
                    self._font_table = np.array(self._fonts, np.int64)
        return self._font_table

    def _open(self, index: int) -> int:
        spec = self.stack.fonts[index]
        blob = _blob_from_file(str(spec.path).encode())
        if not blob:
            raise FileNotFoundError(f"{spec.path}: HarfBuzz could not read this font file")
        face = _face_create(blob, spec.index)
        _blob_destroy(blob)  # the face holds its own reference, as the font holds the face's
        font = _font_create(face)
        _face_destroy(face)
        _font_set_scale(font, self.font_size * 64, self.font_size * 64)  # positions in 26.6 pixels
        return font

    def _language(self, tag: str | None) -> int:
        # HarfBuzz interns languages: the address stays valid for the process. 0: none given.
        language = self._languages.get(tag)
        if language is None:
            language = self._languages[tag] = _language_from_string(tag.encode(), -1)
        return language


@compiled(nogil=True)
def _shape_runs(
    codepoints: np.ndarray, spans: np.ndarray, fonts: np.ndarray, languages: np.ndarray, capacity: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shape every run of `Runs.spans`, given the HarfBuzz addresses of the fonts and languages it
    refers to; returns ([gid, cluster, x advance, x offset, y offset, font, run] x glyphs, and
    where each run's glyphs start, with their end)."""
    buffer = _buffer_create()
    count = np.zeros(1, np.uint32)
    glyphs = np.empty((7, capacity), np.int64)
    run_start = np.zeros(len(spans) + 1, np.int64)
    used = 0
    for r in range(len(spans)):
        text_start, text_length, start, end, rtl, font, language = spans[r]
        _buffer_clear(buffer)
        _buffer_add_utf32(buffer, codepoints.ctypes.data + 4 * text_start, text_length, start, end - start)
        _buffer_set_direction(buffer, _RTL if rtl else _LTR)
        _buffer_guess(buffer)
        if languages[language]:
            _buffer_set_language(buffer, languages[language])
        _shape(fonts[font], buffer, 0, 0)
        infos = numba.carray(_glyph_infos(buffer, count.ctypes.data), (count[0], _FIELDS))
        positions = numba.carray(_glyph_positions(buffer, 0), (count[0], _FIELDS))
        n = len(infos)
        if used + n > glyphs.shape[1]:
            grown = np.empty((7, 2 * (used + n)), np.int64)
            grown[:, :used] = glyphs[:, :used]
            glyphs = grown
        for g in range(n):
            at = used + g
            glyphs[0, at], glyphs[1, at] = infos[g, 0], infos[g, 2]
            glyphs[2, at], glyphs[3, at], glyphs[4, at] = positions[g, 0], positions[g, 2], positions[g, 3]
            glyphs[5, at], glyphs[6, at] = font, r
        used += n
        run_start[r + 1] = used
    _buffer_destroy(buffer)
    return glyphs[:, :used], run_start


def _destroy_fonts(fonts: list[int]) -> None:
    for font in fonts:
        _font_destroy(font)
