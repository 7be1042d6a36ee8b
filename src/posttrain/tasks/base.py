"""The Task interface: deterministic train/test rows in TRL's conversational format, plus scorers.

A task makes rows from a seeded stream of examples. Each example has a `key` (the text that identifies
the problem, e.g. the question); a stable hash of the key puts it in exactly one split, so the splits
are disjoint by construction and `rows(split, n)` is always a prefix of `rows(split, n + k)`.

Scoring functions follow TRL's reward-function convention, `f(prompts, completions, **columns)` ->
`list[float]`, where each completion is a string or a list of messages.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Callable

SPLITS = ("train", "test")


def stable_bucket(key: str, buckets: int = 10) -> int:
    """A hash of `key` in [0, buckets) that is the same on every machine and Python run."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % buckets


def split_of(key: str, test_buckets: int = 2) -> str:
    """'test' for about test_buckets/10 of all keys, 'train' for the rest."""
    return "test" if stable_bucket(key) < test_buckets else "train"


def chat_row(user: str, assistant: str, **extra) -> dict:
    return {
        "prompt": [{"role": "user", "content": user}],
        "completion": [{"role": "assistant", "content": assistant}],
        **extra,
    }


@dataclass
class Task:
    """A task: `rows(split, n)` gives rows, `score` the headline metric, `scorers` every named metric.

    `make_example(rng)` returns `(key, row)`; rows are drawn from `random.Random(f"{name}-{split}-{seed}")`
    and kept when `split_of(key)` matches the split. `unique_in` lists splits where a key may appear
    only once (the held-out split, so that a test set of 200 is 200 different problems).
    """

    name: str
    make_example: Callable[[random.Random], tuple[str, dict]]
    scorers: dict[str, Callable]
    headline: str
    default_max_new_tokens: int
    description: str = ""
    default_sizes: dict[str, int] = field(default_factory=lambda: {"train": 5000, "test": 200})
    unique_in: tuple[str, ...] = ("test",)
    seed: int = 0

    def rows(self, split: str, n: int | None = None) -> list[dict]:
        """The first `n` rows of `split` ('train' or 'test'); the same rows on every call."""
        if split not in SPLITS:
            from posttrain.errors import UserError

            raise UserError(f"task {self.name}: unknown split '{split}'; valid splits: {', '.join(SPLITS)}")
        n = self.default_sizes[split] if n is None else int(n)
        rng = random.Random(f"{self.name}-{split}-{self.seed}")
        rows: list[dict] = []
        seen: set[str] = set()
        attempts = 0
        while len(rows) < n:
            attempts += 1
            if attempts > 100 * n + 10_000:
                raise ValueError(f"task {self.name}: cannot draw {n} distinct {split} rows")
            key, row = self.make_example(rng)
            if split_of(key) != split:
                continue
            if split in self.unique_in:
                if key in seen:
                    continue
                seen.add(key)
            rows.append(row)
        return rows

    def score(self, prompts, completions, **columns) -> list[float]:
        """The headline metric (TRL reward-function convention)."""
        return self.scorers[self.headline](prompts, completions, **columns)
