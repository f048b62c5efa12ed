"""Worker processes that never outlive the process that started them.

Pixglot's pools start their workers from a fork server, not by forking the caller: forking a process
that runs threads (PyTorch's OpenMP pool, a web server's) can leave locks held in the child. A
worker's parent is then the fork server, so neither the pool nor the operating system ends it when
the caller dies without shutting the pool down (`kill -9`, a crash): each worker watches the
caller itself and exits when it is gone.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

_WATCH_SECONDS = 1.0


def _watch(caller: int) -> None:
    while True:
        time.sleep(_WATCH_SECONDS)
        try:
            os.kill(caller, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # the pid was reused by another user's process: ours is gone
            os._exit(0)


def exit_with(caller: int) -> None:
    """In a worker: end this process within a second or two of process `caller` ending."""
    threading.Thread(target=_watch, args=(caller,), daemon=True, name="exit-with-caller").start()


def worker_pool(workers: int, preload: Sequence[str] = ()) -> ProcessPoolExecutor:
    """`workers` processes started from a fork server (which imports `preload` once for all of them),
    each ending when this process ends, however it ends."""
    context = multiprocessing.get_context("forkserver")
    if preload:
        context.set_forkserver_preload(list(preload))
    return ProcessPoolExecutor(workers, mp_context=context, initializer=exit_with, initargs=(os.getpid(),))


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
