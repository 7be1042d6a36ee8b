"""Learning-rate schedule: linear warm-up from 0, then cosine, linear or constant decay.

The multiplier for optimizer step `s` (0-based: the first step uses s = 0) is the same as in
`transformers.get_scheduler`, so runs compare one to one with TRL's:

    s < W:           s / W
    cosine:          0.5 * (1 + cos(pi * (s - W) / (T - W)))
    linear:          (T - s) / (T - W)
    constant:        1
"""

from __future__ import annotations

import math

import torch


def warmup_steps_for(total_steps: int, warmup_steps: int = 0, warmup_ratio: float = 0.0) -> int:
    """`warmup_steps` when set, else ceil(warmup_ratio * total_steps) (as transformers does)."""
    return warmup_steps if warmup_steps > 0 else math.ceil(warmup_ratio * total_steps)


def lr_multiplier(step: int, total_steps: int, warmup: int, kind: str) -> float:
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total_steps - warmup)
    if kind == "linear":
        return max(0.0, 1.0 - progress)
    if kind == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown lr_scheduler {kind!r}")


class _Multiplier:
    """A picklable callable, so the scheduler's state_dict round-trips."""

    def __init__(self, total_steps: int, warmup: int, kind: str):
        self.total_steps, self.warmup, self.kind = total_steps, warmup, kind

    def __call__(self, step: int) -> float:
        return lr_multiplier(step, self.total_steps, self.warmup, self.kind)


def build_scheduler(optimizer, total_steps: int, kind: str = "cosine", warmup_steps: int = 0, warmup_ratio: float = 0.0):
    warmup = warmup_steps_for(total_steps, warmup_steps, warmup_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _Multiplier(total_steps, warmup, kind))
