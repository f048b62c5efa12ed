"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is one file `checkpoints/step-NNNNNNN.pt` (torch.save of tensors and plain values
only, so it loads with weights_only=True): the network, the loss's own parameters, the optimizer
and scheduler states, the step, the number of micro-batches consumed (the data position: batches
are a function of their number), the RNG state of torch, and the resolved training config. It is
written to a temporary file, flushed to disk, then renamed: a run killed at any moment leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ground.atomic import write_atomic
from ground.errors import FileFormatError

DIRECTORY = "checkpoints"
_NAME = re.compile(r"^step-(\d+)\.pt$")


def checkpoint_dir(out: Path) -> Path:
    return out / DIRECTORY


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoints of a run, oldest first."""
    directory = checkpoint_dir(out)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save(out: Path, step: int, state: dict, keep: int) -> Path:
    directory = checkpoint_dir(out)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step-{step:07d}.pt"

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename makes it the latest checkpoint

    write_atomic(path, write)
    for _, old in list_checkpoints(out)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError... for damaged files
        raise FileFormatError(path, f"unreadable training checkpoint ({type(err).__name__}: {err})") from None


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
