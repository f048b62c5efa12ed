"""Worker processes end with the process that started them, also when it is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from crash_support import kill_group, living_members

from indexer.samples import write_images

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def kill_leader_only(process: subprocess.Popen, at_least: int) -> None:
    """Once the process has started `at_least` - 1 others, SIGKILL it alone (not its group), as a
    user's kill -9 or a crash would; then every process of its group must end by itself."""
    group = process.pid  # its own session and group: start_new_session
    try:
        wait_for(lambda: len(living_members(group)) >= at_least, 120, "the workers did not start")
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        wait_for(lambda: not living_members(group), 20, f"left running: {living_members(group)}")
    finally:
        kill_group(group)


# A process that starts a pool of two workers busy for ten minutes, says so, and waits.
POOL_OWNER = """
import time
from ground.processes import worker_pool
if __name__ == '__main__':
    pool = worker_pool(2)
    futures = [pool.submit(time.sleep, 600) for _ in range(2)]
    print('started', flush=True)
    time.sleep(600)
"""


def start_pool_owner(stdout: int | None = subprocess.DEVNULL) -> subprocess.Popen:
    """The pool owner, in a process group of its own."""
    return subprocess.Popen(
        [sys.executable, "-c", POOL_OWNER],
        cwd=REPO,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=stdout,
    )


def test_a_killed_pool_owner_leaves_no_worker_behind() -> None:
    process = start_pool_owner()
    kill_leader_only(process, at_least=4)  # the owner, the fork server, two workers


def test_killing_the_indexer_leaves_no_process_behind(tiny: str, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_images(folder, 300, size=(64, 48))
    command = [sys.executable, "-m", "pixglot", "index", str(folder), "--collection", "c", "--model", tiny]
    process = subprocess.Popen(
        [*command, "--workers", "2", "--quiet"],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kill_leader_only(process, at_least=4)


def test_workers_end_while_their_killed_owner_is_not_yet_reaped() -> None:
    # A parent reading the owner's output until it closes (subprocess.run(capture_output=True)) reaps
    # the owner only then: until that moment the owner's pid still exists, as a zombie. The workers
    # hold the output open too, so they must see the owner gone without its pid going away.
    process = start_pool_owner(stdout=subprocess.PIPE)
    try:
        wait_for(lambda: len(living_members(process.pid)) >= 4, 120, "the workers did not start")
        os.kill(process.pid, signal.SIGKILL)
        out, _ = process.communicate(timeout=30)  # returns once every holder of the pipe has ended
        assert out == b"started\n"
    finally:
        kill_group(process.pid)
