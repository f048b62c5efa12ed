"""Unpacking zip and tar archives so that nothing lands outside the target directory.

Every entry is checked before the first byte is written; one bad entry rejects the whole archive.
Rejected: absolute names (also `C:`-style), any `..` component, device files and FIFOs, entries
that would be written through a link of the same archive, and links whose target is absolute,
contains `..` or leaves the target. Zip archives may not contain symlinks at all (zip tools store
them as plain files on some systems, so they cannot be trusted either way).
"""

from __future__ import annotations

import posixpath
import stat
import tarfile
import zipfile
from pathlib import Path

from ground.errors import FileFormatError


class UnsafeArchiveError(FileFormatError):
    pass


def _parts(name: str) -> list[str]:
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def _check_name(archive: Path, name: str) -> list[str]:
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise UnsafeArchiveError(archive, f"entry {name!r} has an absolute path; refusing to unpack")
    parts = _parts(name)
    if ".." in parts:
        raise UnsafeArchiveError(archive, f"entry {name!r} contains '..'; refusing to unpack")
    return parts


def _check_link(archive: Path, name: str, target: str, *, relative_to_entry: bool) -> None:
    unified = target.replace("\\", "/")
    if not unified or unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise UnsafeArchiveError(archive, f"link {name!r} -> {target!r} points outside the target; refusing")
    if ".." in _parts(target):
        raise UnsafeArchiveError(archive, f"link {name!r} -> {target!r} contains '..'; refusing to unpack")
    base = posixpath.dirname("/".join(_parts(name))) if relative_to_entry else ""
    resolved = posixpath.normpath(posixpath.join("/", base, unified))
    if resolved == "/":
        raise UnsafeArchiveError(
            archive, f"link {name!r} -> {target!r} points at the target itself; refusing"
        )


def _check_not_through_link(archive: Path, name: str, parts: list[str], links: set[tuple[str, ...]]) -> None:
    for i in range(1, len(parts)):
        if tuple(parts[:i]) in links:
            raise UnsafeArchiveError(archive, f"entry {name!r} would be written through a link; refusing")


def _validate_tar(archive: Path, members: list[tarfile.TarInfo]) -> None:
    links: set[tuple[str, ...]] = set()
    for member in members:
        parts = _check_name(archive, member.name)
        _check_not_through_link(archive, member.name, parts, links)
        if member.issym():
            _check_link(archive, member.name, member.linkname, relative_to_entry=True)
            links.add(tuple(parts))
        elif member.islnk():
            _check_link(archive, member.name, member.linkname, relative_to_entry=False)
            links.add(tuple(parts))
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(
                archive, f"entry {member.name!r} is a device or FIFO; refusing to unpack"
            )


def _validate_zip(archive: Path, infos: list[zipfile.ZipInfo]) -> None:
    for info in infos:
        _check_name(archive, info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchiveError(archive, f"entry {info.filename!r} is a symlink; refusing to unpack")


def safe_extract(archive: str | Path, target: str | Path) -> list[str]:
    """Unpack a .zip or a (compressed) tar archive into `target`; returns the entry names.

    Raises UnsafeArchiveError (nothing written) if any entry could escape `target`, and
    FileFormatError if the file is not a readable archive.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        try:
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                _validate_zip(archive, infos)
                for info in infos:
                    zf.extract(info, target)
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            raise FileFormatError(
                archive, f"damaged zip archive ({err}); delete it and download again"
            ) from err
        return [info.filename for info in infos]
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            _validate_tar(archive, members)
            if hasattr(tarfile, "data_filter"):
                # Python's own checks as a second line of defence (they also drop setuid bits).
                tf.extractall(target, members=members, filter="data")
            else:
                tf.extractall(target, members=members)  # every member was validated above
    except (tarfile.TarError, EOFError, OSError) as err:
        raise FileFormatError(
            archive, f"not a readable zip or tar archive ({err}); delete it and download again"
        ) from err
    return [m.name for m in members]
