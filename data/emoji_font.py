"""Emoji pictures straight from a colour bitmap font (CBDT/CBLC, e.g. Noto Color Emoji).

An emoji string (single code point, ZWJ sequence, skin-tone or keycap sequence, flag) is shaped
with HarfBuzz; when the font's ligatures turn it into exactly one glyph, that glyph's embedded PNG
from the largest bitmap strike is the picture.
"""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import uharfbuzz as hb
from fontTools.ttLib import TTFont
from PIL import Image

from ground.errors import FileFormatError, PixglotError

SYSTEM_FONT_PATHS = (
    Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"),
    Path("/usr/share/fonts/noto/NotoColorEmoji.ttf"),
    Path("/usr/share/fonts/google-noto-emoji/NotoColorEmoji.ttf"),
)


def find_emoji_font(path: str | Path | None = None) -> Path:
    """The given font, PIXGLOT_EMOJI_FONT, fontconfig's "Noto Color Emoji", or a usual system path."""
    if path:
        return Path(path)
    if os.environ.get("PIXGLOT_EMOJI_FONT"):
        return Path(os.environ["PIXGLOT_EMOJI_FONT"])
    try:
        found = subprocess.run(
            ["fc-match", "-f", "%{file}", "Noto Color Emoji"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
        if found and "emoji" in Path(found).name.lower():
            return Path(found)
    except (OSError, subprocess.SubprocessError):
        pass
    for candidate in SYSTEM_FONT_PATHS:
        if candidate.is_file():
            return candidate
    raise PixglotError("Noto Color Emoji not found; install fonts-noto-color-emoji or set PIXGLOT_EMOJI_FONT")


class EmojiFont:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileFormatError(self.path, "font file not found")
        try:
            self._tt = TTFont(self.path, lazy=True)
            tables = set(self._tt.keys())
        except Exception as err:  # fontTools raises many types for damaged fonts
            raise FileFormatError(self.path, f"not a readable font ({err})") from err
        if not {"CBDT", "CBLC"} <= tables:
            raise FileFormatError(
                self.path, "has no CBDT/CBLC colour bitmaps (a bitmap emoji font is needed)"
            )
        strikes = self._tt["CBDT"].strikeData
        sizes = [s.bitmapSizeTable.ppemY for s in self._tt["CBLC"].strikes]
        self._strike = strikes[max(range(len(strikes)), key=lambda i: sizes[i])]
        self._hb_font = hb.Font(hb.Face(hb.Blob.from_file_path(str(self.path))))
        self.version = self._version()

    def _version(self) -> str:
        name = self._tt["name"].getDebugName(5) if "name" in self._tt else None
        return name or f"{self._tt['head'].fontRevision:.3f}"

    def glyph(self, text: str) -> int | None:
        """The glyph id that `text` shapes to, or None unless the font makes it exactly one real glyph."""
        buf = hb.Buffer()
        buf.add_str(text)
        buf.guess_segment_properties()
        hb.shape(self._hb_font, buf, {})
        infos = buf.glyph_infos
        if len(infos) != 1 or infos[0].codepoint == 0:
            return None
        return infos[0].codepoint

    def png(self, glyph: int) -> bytes | None:
        """The glyph's embedded PNG bytes, or None if the glyph has no bitmap."""
        bitmap = self._strike.get(self._tt.getGlyphName(glyph))
        if bitmap is None:
            return None
        if not hasattr(bitmap, "imageData"):
            bitmap.decompile()
        return getattr(bitmap, "imageData", None)

    def picture(self, glyph: int, background: tuple[int, int, int] = (255, 255, 255)) -> bytes | None:
        """A square RGB PNG of the glyph's bitmap, centred on `background`; None if it has no bitmap.

        Flattening the transparency gives every reader the same pixels (converting a transparent PNG
        to RGB is otherwise up to each decoder).
        """
        data = self.png(glyph)
        if data is None:
            return None
        with Image.open(io.BytesIO(data)) as source:
            rgba = source.convert("RGBA")
        side = max(rgba.size)
        canvas = Image.new("RGB", (side, side), background)
        canvas.paste(rgba, ((side - rgba.width) // 2, (side - rgba.height) // 2), rgba)
        out = io.BytesIO()
        canvas.save(out, format="PNG")
        return out.getvalue()
