"""Learning-rate schedules: a linear warmup, then cosine decay, inverse square root or constant.

`lr_factor(step, ...)` is the multiplier of the peak learning rate for the update made at `step`
(0-based); it is a pure function of the step, so a resumed run continues the same curve.
"""

from __future__ import annotations

import functools
import math

import torch

KINDS = ("cosine", "rsqrt", "constant")


def lr_factor(
    step: int,
    *,
    total: int,
    kind: str = "cosine",
    warmup: int = 0,
    end_fraction: float = 0.0,
    rsqrt_timescale: int = 0,
) -> float:
    if kind not in KINDS:
        raise ValueError(f"unknown schedule {kind!r}")
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    if kind == "rsqrt":
        timescale = rsqrt_timescale or warmup or 1
        return math.sqrt(timescale / max(step + 1, timescale))
    progress = (step - warmup) / max(1, total - warmup)
    return end_fraction + (1 - end_fraction) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def scheduler(
    optimizer: torch.optim.Optimizer, config: dict, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over `optimizer` for the `schedule` section of a resolved training config."""
    factor = functools.partial(
        lr_factor,
        total=total,
        kind=config["kind"],
        warmup=config["warmup_steps"],
        end_fraction=config["end_lr_fraction"],
        rsqrt_timescale=config["rsqrt_timescale"],
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
