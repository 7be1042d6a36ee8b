"""Curriculum and filtering of an online run's prompts (CurriculumOptions).

Filtering (Llama 4's, SEED_NOTES 5.3: drop prompts the policy always or never solves): each prompt
keeps the pass rate of its last `filter_window` groups (a completion passes when its reward is >=
`pass_threshold`); once it has been sampled in `filter_min_seen` groups, a mean pass rate of exactly
1.0 (`solved`) or 0.0 (`unsolved`) leaves it out of later rounds. Such a group's rewards are all
equal, so its group-normalised advantages are 0 and its samples cost generation time for no
gradient. A filtered prompt is never sampled again, so its rate never changes: the decision is for
the rest of the run. While fewer prompts than a round needs are left, the filter pauses.

The difficulty schedule takes each epoch's prompts in increasing order of a dataset column (easy
first), the seeded random order breaking ties. Both are pure functions of the recorded pass rates
and the seed, saved in every checkpoint, so a resumed run filters exactly as the uninterrupted one.
"""

from __future__ import annotations

import random

from posttrain.errors import DataError


class PromptCurriculum:
    def __init__(self, rows: list[dict], config):
        self.rows, self.config = rows, config
        self.history: dict[int, list[float]] = {}  # prompt index -> pass rates of its most recent groups
        self.filtered: set[int] = set()
        column = config.difficulty_column
        if column is not None:
            missing = next((i for i, row in enumerate(rows) if not isinstance(row.get(column), (int, float))), None)
            if missing is not None:
                raise DataError(f"{config.dataset}: row {missing} has no number in column '{column}' (difficulty_column); "
                                f"give every row one or unset difficulty_column")

    def order(self, epoch: int) -> list[int]:
        """The prompt order of an epoch: seeded random, then (difficulty_column) stably sorted easy first."""
        order = random.Random(self.config.seed + epoch).sample(range(len(self.rows)), len(self.rows))
        column = self.config.difficulty_column
        return sorted(order, key=lambda i: self.rows[i][column]) if column is not None else order

    def keeps(self, index: int, needed: int) -> bool:
        """Whether prompt `index` is sampled; the filter pauses when fewer than `needed` prompts are left."""
        return index not in self.filtered or len(self.rows) - len(self.filtered) < needed

    def record(self, index: int, rewards: list[float | None]) -> float | None:
        """A group of prompt `index` was sampled: update its pass rate and the filter; returns the group's pass rate."""
        usable = [r for r in rewards if r is not None]
        if not usable:
            return None
        rate = sum(r >= self.config.pass_threshold for r in usable) / len(usable)
        recent = (self.history.get(index, []) + [rate])[-self.config.filter_window:]
        self.history[index] = recent
        if self._filters(recent):
            self.filtered.add(index)
        return rate

    def _filters(self, recent: list[float]) -> bool:
        cfg = self.config
        if cfg.prompt_filter == "off" or len(recent) < cfg.filter_min_seen:
            return False
        mean = sum(recent) / len(recent)
        return (mean == 1.0 and cfg.prompt_filter in ("solved", "both")) or (mean == 0.0 and cfg.prompt_filter in ("unsolved", "both"))

    def state_dict(self) -> dict:
        return {"history": {str(k): v for k, v in self.history.items()}, "filtered": sorted(self.filtered)}

    def load_state_dict(self, state: dict) -> None:
        self.history = {int(k): list(v) for k, v in state.get("history", {}).items()}
        self.filtered = set(state.get("filtered", []))
