"""A round's statistics across processes: values gathered in rank order, their mean, sample std, and
whether a group's rewards are all equal (GRPO's zero-std groups)."""

from __future__ import annotations

import math

import posttrain.ranks as ranks


def gathered(values: list) -> list:
    """Every process's values, concatenated in rank order (this process's alone in one process)."""
    return [v for part in ranks.all_gather_object(values) for v in part] if ranks.world_size() > 1 else list(values)


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0


def std(xs) -> float:
    xs = list(xs)
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def all_equal(xs) -> bool:
    return len(xs) < 2 or max(xs) - min(xs) < 1e-12
