"""Worker processes that never outlive the process that started them.

Pixglot's pools start their workers from a fork server, not by forking the caller: forking a process
that runs threads (PyTorch's OpenMP pool, a web server's) can leave locks held in the child. A
worker's parent is then the fork server, so neither the pool nor the operating system ends it when
the caller dies without shutting the pool down (`kill -9`, a crash): each worker watches the
caller itself and exits when it is gone.

It watches a pipe, not the caller's pid: the kernel closes a dead process's end of the pipe at once,
while its pid answers `kill(pid, 0)` until its own parent reaps it. A parent that waits for the
output pipes to close before reaping (`subprocess.run(capture_output=True)`) would otherwise wait
for workers that wait for it.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection


@functools.cache
def _lifeline() -> tuple[Connection, Connection]:
    # This process holds the only writing end, for as long as it lives, and never writes to it.
    return multiprocessing.Pipe(duplex=False)


def lifeline() -> Connection:
    """A pipe end that reads end-of-file once this process has ended, for its workers to watch."""
    return _lifeline()[0]


def _watch(caller: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        caller.recv_bytes()
    os._exit(0)


def exit_with(caller: Connection) -> None:
    """In a worker: end this process as soon as the process that gave it `caller` (its `lifeline()`)
    has ended."""
    threading.Thread(target=_watch, args=(caller,), daemon=True, name="exit-with-caller").start()


def worker_pool(workers: int, preload: Sequence[str] = ()) -> ProcessPoolExecutor:
    """`workers` processes started from a fork server (which imports `preload` once for all of them),
    each ending when this process ends, however it ends."""
    context = multiprocessing.get_context("forkserver")
    if preload:
        context.set_forkserver_preload(list(preload))
    return ProcessPoolExecutor(workers, mp_context=context, initializer=exit_with, initargs=(lifeline(),))


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
