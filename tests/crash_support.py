"""Crashing a `pixglot` command at a chosen point, and cleaning up after it.

`run_killed_at` runs the command in its own process group with one function wrapped, so that its
Nth call SIGKILLs the process before the call, after it, or halfway through writing what it saves.
A kill at a named point lands where a random kill rarely does (inside a checkpoint write, between a
shard and its transaction), and lands there on every run. The group is killed afterwards whatever
happened, so a failing test leaves no process behind either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_KILLER = """
import functools, importlib, io, os, signal, sys

target, when, nth, argv = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
module_name, _, qualname = target.partition(":")
owner = importlib.import_module(module_name)
*parents, name = qualname.split(".")
for parent in parents:
    owner = getattr(owner, parent)
original = getattr(owner, name)
calls = 0


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def write_half(obj, file, *args, **kwargs):
    # What original(obj, file) writes, cut off halfway, as if the process died inside the call.
    buffer = io.BytesIO()
    original(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    out = file if hasattr(file, "write") else open(file, "wb")
    out.write(data[: len(data) // 2])
    out.flush()
    os.fsync(out.fileno())
    die()


@functools.wraps(original)
def wrapped(*args, **kwargs):
    global calls
    calls += 1
    if calls == nth and when == "before":
        die()
    if calls == nth and when == "halfway":
        write_half(*args, **kwargs)
    result = original(*args, **kwargs)
    if calls == nth and when == "after":
        die()
    return result


setattr(owner, name, wrapped)
from pixglot.cli import main

sys.exit(main(argv))
"""


def kill_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # every member has ended
        os.killpg(group, signal.SIGKILL)


def run_killed_at(
    argv: list[str], target: str, when: str, nth: int, env: dict[str, str], timeout: float = 300
) -> None:
    """Run `pixglot argv` until the `nth` call of `target` ("module:Class.method") kills it `when`
    ("before", "after" or "halfway": half of what a torch.save-like call writes); fail if it ends
    any other way."""
    assert when in ("before", "after", "halfway"), when
    returncode, _, err = run_in_group(
        [sys.executable, "-c", _KILLER, target, when, str(nth), *argv], env, timeout
    )
    assert returncode == -signal.SIGKILL, f"not killed at {target} ({when} call {nth}): {err}"


def run_in_group(command: list[str], env: dict[str, str], timeout: float = 300) -> tuple[int, str, str]:
    """Run `command` in the repository, in a process group of its own that is killed whole when it
    ends (so no worker of it outlives the test); its return code, stdout and stderr."""
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        kill_group(process.pid)
    return process.returncode, out, err


def living_members(group: int) -> list[int]:
    """Processes of process group `group` that are not zombies (Linux: reads /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended while we looked
        state, _, group_id = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(group_id) == group and state != "Z":
            found.append(int(entry.name))
    return found
