"""Time-boxed phases for a short run on a GPU machine: each phase's seconds and outcome (its
error, when it fails) are written to OUT/summary.json as soon as it ends, so that a summary exists
whatever stops the run."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class Phases:
    def __init__(self, out: Path, budget: float):
        self.deadline = time.monotonic() + budget
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        self.summary: dict = {"phases": {}}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def phase(self, name: str, function: Callable[..., T], *args: object) -> T:
        started = time.monotonic()
        print(f"== {name} ({self.left():.0f} s left)", flush=True)
        try:
            result = function(*args)
            self.summary["phases"][name] = {"seconds": round(time.monotonic() - started, 1), "ok": True}
            return result
        except BaseException as err:
            self.summary["phases"][name] = {
                "seconds": round(time.monotonic() - started, 1),
                "ok": False,
                "error": "".join(traceback.format_exception(err))[-4000:],
            }
            raise
        finally:
            self.write_summary()

    def write_summary(self) -> None:
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=1, ensure_ascii=False))
