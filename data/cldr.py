"""Emoji names and keywords from Unicode CLDR annotations (annotations/ and annotationsDerived/).

Debian and Ubuntu ship them in the unicode-cldr-core package; PIXGLOT_CLDR_DIR (the `common`
directory of a CLDR release) points elsewhere.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ground.errors import FileFormatError, PixglotError

SYSTEM_CLDR_DIRS = (Path("/usr/share/unicode/cldr/common"),)

# XM3600 code -> CLDR locale ids to try, in order. CLDR calls Quechua `qu` (XM3600's `quz` is Cusco
# Quechua, a variety of it); Norwegian Bokmål is `no` in recent CLDR and was `nb` in older releases.
CLDR_LOCALES = {"quz": ("qu",), "no": ("no", "nb")}

_INHERIT = "↑↑↑"  # CLDR's "same as the parent locale" marker, not a real value


@dataclass
class Annotation:
    name: str | None = None  # the short name (type="tts")
    keywords: list[str] = field(default_factory=list)


def find_cldr_dir(directory: str | Path | None = None) -> Path:
    candidates = [Path(directory)] if directory else []
    if not directory and os.environ.get("PIXGLOT_CLDR_DIR"):
        candidates.append(Path(os.environ["PIXGLOT_CLDR_DIR"]))
    if not directory:
        candidates.extend(SYSTEM_CLDR_DIRS)
    for path in candidates:
        if (path / "annotations").is_dir():
            return path
    raise PixglotError(
        f"no CLDR annotations found (looked in {', '.join(map(str, candidates))}); install the Debian/Ubuntu "
        "package unicode-cldr-core or set PIXGLOT_CLDR_DIR to the 'common' directory of a CLDR release"
    )


def cldr_version(cldr_dir: Path) -> str:
    dtd = cldr_dir / "dtd" / "ldml.dtd"
    if dtd.is_file():
        match = re.search(r'cldrVersion\s+CDATA\s+#FIXED\s+"([^"]+)"', dtd.read_text(encoding="utf-8"))
        if match:
            return match.group(1)
    return "unknown"


def locale_for(language: str, cldr_dir: Path) -> str | None:
    """The CLDR locale that serves an XM3600 language code, or None if this CLDR has none."""
    for locale in CLDR_LOCALES.get(language, (language,)):
        if (cldr_dir / "annotations" / f"{locale}.xml").is_file():
            return locale
    return None


def _read(path: Path, into: dict[str, Annotation]) -> None:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise FileFormatError(path, f"not readable CLDR XML ({err})") from err
    for element in root.iter("annotation"):
        cp, text = element.get("cp"), (element.text or "").strip()
        if not cp or not text or text == _INHERIT:
            continue
        entry = into.setdefault(cp, Annotation())
        if element.get("type") == "tts":
            entry.name = entry.name or text
        elif not entry.keywords:
            entry.keywords = [k.strip() for k in text.split("|") if k.strip() and k.strip() != _INHERIT]


def annotations(locale: str, cldr_dir: Path) -> dict[str, Annotation]:
    """Emoji string (without U+FE0F, as CLDR writes it) -> name and keywords in `locale`."""
    result: dict[str, Annotation] = {}
    for sub in ("annotations", "annotationsDerived"):
        path = cldr_dir / sub / f"{locale}.xml"
        if path.is_file():
            _read(path, result)
    return result
