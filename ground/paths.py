"""File paths that are not valid UTF-8: stored losslessly, shown escaped, printed as their bytes.

On POSIX a file name is bytes. Python hands a name that is not valid UTF-8 to Pixglot as a `str`
in which each undecodable byte b is the lone surrogate U+DC00+b (PEP 383). Such a string opens
the file, but a database cannot store it, a page cannot show it and JSON should not carry it.

- **Stored form** (`to_stored`/`from_stored`): each undecodable byte becomes `//` and two hex
  digits, so `/photos/caf\\xe9.jpg` is stored as `/photos/caf//e9.jpg`. A normalised absolute path
  never holds `//` after its first character, so no real path is read back as escaped: the mapping
  is one-to-one, leaves every UTF-8 path as it is (databases written before keep working), and keeps
  prefixes, so folder filters (`path LIKE '/photos/%'`) still match.
- **Shown form** (`printable`): Python's `backslashreplace`, `caf\\xe9.jpg`, for the UI and JSON.
- **Printed form** (`write_paths`): the bytes themselves, for `-f` and `-0` output that pipes
  into other programs.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable

from ground.errors import InputError

_ESCAPED = re.compile(r"(?<=.)//([89a-f][0-9a-f])", re.DOTALL)  # surrogateescape covers bytes 0x80-0xff
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def to_stored(path: str) -> str:
    """The form of the normalised absolute `path` that a database holds (valid UTF-8)."""
    stored = _UNDECODABLE.sub(lambda m: f"//{ord(m.group()) - 0xDC00:02x}", path)
    if _SURROGATE.search(stored):
        raise InputError(f"path {printable(path)}: holds a UTF-16 surrogate that no file name can")
    return stored


def from_stored(stored: str) -> str:
    """The path `to_stored` was given: the name the operating system knows the file by."""
    return _ESCAPED.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), stored)


def printable(path: str) -> str:
    """`path` with each byte that is not UTF-8 shown as `\\xNN`, for people and JSON."""
    return _SURROGATE.sub(_escape_surrogate, path)


def _escape_surrogate(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if code >= 0xDC80 else f"\\u{code:04x}"


def write_paths(paths: Iterable[str], end: bytes) -> None:
    """Each path's own bytes on standard output, followed by `end` (b"\\n" for -f, b"\\0" for -0)."""
    sys.stdout.flush()
    out = sys.stdout.buffer
    for path in paths:
        out.write(os.fsencode(path) + end)
    out.flush()
