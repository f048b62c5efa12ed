"""Decoding and rendering in worker processes, so large batches use every core beside the model.

Workers start from a fork server and end when the caller ends (`ground.processes.worker_pool`).
The pool is started once per process and reused; small batches never start it.
"""

from __future__ import annotations

import atexit
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

from ground.processes import available_cores, worker_pool

T = TypeVar("T")
R = TypeVar("R")


_pool: ProcessPoolExecutor | None = None


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        _pool = worker_pool(available_cores(), preload=["model.preprocess"])
        atexit.register(_pool.shutdown, wait=False, cancel_futures=True)
    return _pool


def _run_chunk(fn: Callable[[T], R], chunk: list[T]) -> list[R]:
    return [fn(item) for item in chunk]


def ordered_map(
    fn: Callable[[T], R], items: Sequence[T], min_items: int, chunk: int = 8, workers: bool | None = None
) -> Iterator[R]:
    """fn over items, results in input order; computed ahead in worker processes, `chunk` items
    per task, when there are at least `min_items` (below that, starting and feeding workers costs
    more than it saves) or `workers=True`. `fn` must be a picklable module-level function or
    partial, and should return errors as values: exceptions may not survive pickling."""
    if workers is None:
        workers = len(items) >= min_items and available_cores() > 1
    if not workers:
        return (fn(item) for item in items)
    return _pooled(fn, items, chunk)


def _pooled(fn: Callable[[T], R], items: Sequence[T], chunk: int) -> Iterator[R]:
    pool = _get_pool()
    ahead = 4 * available_cores()  # chunks in flight: enough to keep workers busy, bounded memory
    chunks: Iterable[list[T]] = (list(items[i : i + chunk]) for i in range(0, len(items), chunk))
    pending: deque[Future] = deque()
    for part in chunks:
        pending.append(pool.submit(_run_chunk, fn, part))
        if len(pending) >= ahead:
            yield from pending.popleft().result()
    while pending:
        yield from pending.popleft().result()


__all__ = ["available_cores", "ordered_map"]
