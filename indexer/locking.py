"""One writer per collection: an advisory file lock that the kernel releases when the holder dies."""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ground.errors import PixglotError


class CollectionBusy(PixglotError):
    pass


@contextmanager
def exclusive(path: Path, what: str, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing). With wait=False a held lock raises
    CollectionBusy naming `what` instead of waiting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise CollectionBusy(f"{what} is being written by another Pixglot process") from None
            print(f"waiting for another Pixglot process that is writing {what}...", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def try_exclusive(path: Path) -> int | None:
    """The locked file descriptor, or None when another process holds the lock. Close it to unlock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
