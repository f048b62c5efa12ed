"""The indexing run's parts that tests of whole runs do not pin down: the pool it picks, the
ordered window of work in flight, and the report's one-line summary."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ground.processes import available_cores
from indexer.ingest import IndexReport, _executor, _InlineExecutor, ordered_map


def test_summary_counts_touched_files_as_unchanged_and_gives_the_rate() -> None:
    report = IndexReport(
        "photos",
        scanned=20,
        unchanged=5,
        added=6,
        updated=2,
        touched=3,
        encoded=8,
        reused=1,
        failed=3,
        seconds=4.0,
    )
    assert report.summary() == (
        "photos: 20 files, 6 added, 2 changed, 8 unchanged, 1 vectors reused, 3 failed"
        " (8 encoded in 4.0 s, 2.0 images/s)"
    )
    report.pruned = 4
    assert report.summary().startswith(
        "photos: 20 files, 6 added, 2 changed, 8 unchanged, 1 vectors reused, 3 failed, 4 pruned ("
    )
    # A run that took no measurable time has no rate rather than a division by zero.
    assert IndexReport("empty").summary().endswith("(0 encoded in 0.0 s, 0.0 images/s)")


@pytest.mark.parametrize(
    ("workers", "jobs", "processes"),
    [(0, 10, 0), (3, 1, 0), (1, 5, 1), (2, 2, 2), (4, 3, 3), (None, 1, 0)],
)
def test_the_pool_is_this_process_for_workers_0_or_a_single_file(
    workers: int | None, jobs: int, processes: int
) -> None:
    pool, count = _executor(workers, jobs)
    try:
        assert count == processes
        assert isinstance(pool, ProcessPoolExecutor if processes else _InlineExecutor)
        assert pool.submit(divmod, 7, 2).result() == (3, 1)
    finally:
        pool.shutdown()


def test_by_default_one_process_per_core_and_no_more_than_files() -> None:
    pool, count = _executor(None, 1000)
    pool.shutdown()
    assert count == available_cores()


def test_inline_tasks_run_at_once_with_their_keywords_and_keep_their_errors() -> None:
    inline = _InlineExecutor()
    assert inline.submit(int, "ff", base=16).result() == 255
    failed = inline.submit(int, "zz", base=16)
    assert failed.done() and isinstance(failed.exception(), ValueError)


@given(
    st.lists(st.integers(-1000, 1000), max_size=40),
    st.integers(1, 6),
    st.sampled_from([2, 3]),
)
def test_ordered_map_keeps_the_input_order_and_passes_items_through(
    items: list[int], window: int, mod: int
) -> None:
    def task(item: object) -> tuple | None:
        # Later items finish first, and every `mod`-th item passes through without a task.
        return None if item % mod == 0 else (_slow_square, item, 0.0005 * ((1000 - item) % 7))

    with ThreadPoolExecutor(4) as pool:
        out = list(ordered_map(pool, items, task, window))
    assert out == [(i, None if i % mod == 0 else i * i) for i in items]


def _slow_square(item: int, seconds: float) -> int:
    time.sleep(seconds)
    return item * item


def test_ordered_map_holds_no_more_than_its_window_in_flight() -> None:
    lock, running, most = threading.Lock(), [0], [0]

    def work(item: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return item

    with ThreadPoolExecutor(16) as pool:
        out = [result for _, result in ordered_map(pool, range(24), lambda item: (work, item), window=3)]
    assert out == list(range(24))
    # The window's 3, plus the one just submitted before the oldest is waited for.
    assert 2 <= most[0] <= 4
