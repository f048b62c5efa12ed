"""Finding image files under the folders a user names."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ground.errors import InputError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
UNKNOWN = -1  # size and mtime of an entry that could not be looked at


@dataclass(frozen=True)
class FileEntry:
    path: str  # absolute and normalised, the form stored in the database
    size: int
    mtime_ns: int


def normalise_path(path: str | os.PathLike[str]) -> str:
    """The absolute form of `path` with `..` and `.` collapsed (symlinks are not resolved)."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _excluded(relative: str, name: str, patterns: Sequence[str]) -> bool:
    # A pattern matches the file or folder name ("*.png", "thumbs") or the path below the root
    # ("raw/*", "2019/*/private").
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(relative, p) for p in patterns)


def check_roots(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The roots, normalised; a missing one is an error before anything is indexed."""
    roots = []
    for path in paths:
        root = normalise_path(path)
        if not os.path.exists(root):
            raise InputError(f"{path}: no such file or folder")
        roots.append(root)
    if not roots:
        raise InputError("no folder to index was given")
    return roots


def scan(roots: Sequence[str], exclude: Sequence[str] = ()) -> Iterator[FileEntry]:
    """Image files under `roots`, each once, in a stable order.

    Hidden files and folders (a name starting with ".") and names or relative paths matching an
    `exclude` glob are skipped. Folder symlinks are not followed, so a link cycle cannot loop. Every
    other entry with an image name is listed, pipes, devices and broken links included, and so is a
    folder that cannot be listed: reading it is what finds out, and reports, what is wrong.
    """
    seen: set[str] = set()
    for root in roots:
        candidates = [root] if os.path.isfile(root) else _walk(root, exclude)
        for path in candidates:
            if path in seen:
                continue
            seen.add(path)
            try:
                stat = os.stat(path)
            except OSError:
                # A dangling or looping link, or a file gone since it was listed: a run reads it
                # like any other and reports why it could not (UNKNOWN matches no stored row).
                yield FileEntry(path, UNKNOWN, UNKNOWN)
                continue
            yield FileEntry(path, stat.st_size, stat.st_mtime_ns)


def _walk(root: str, exclude: Sequence[str]) -> Iterator[str]:
    # A folder that cannot be listed is yielded like a file: the run tries to read it and reports
    # why it could not (permission denied, a name too long), instead of it vanishing unnoticed.
    unlisted: list[str] = []
    for folder, dirs, files in os.walk(root, onerror=lambda err: unlisted.append(err.filename)):
        yield from unlisted
        unlisted.clear()
        rel_folder = os.path.relpath(folder, root)
        rel_folder = "" if rel_folder == "." else rel_folder + os.sep
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not _excluded(rel_folder + d, d, exclude)
        )
        for name in sorted(files):
            if name.startswith(".") or not is_image_name(name):
                continue
            relative = rel_folder + name
            if _excluded(relative, name, exclude):
                continue
            yield os.path.join(folder, name)
    yield from unlisted


def under(path: str, root: str) -> bool:
    """Whether `path` is `root` itself or inside it (both normalised)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
