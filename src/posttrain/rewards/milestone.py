"""Milestone rewards for agents: a weighted sum of verifiable progress indicators over an episode's events.

Seed 003 ("Agentic Reinforcement Learning via Policy Optimization", S3 L2987-3125) builds the reward of
a computer-use agent from rule-based milestone detectors over logged events (CDP logs, DOM / AX
trees, UIA events, filesystem monitors). Its example reward function (S3 L3093-3114) is

    r = w_nav r_nav + w_UI r_UI + w_form r_form + w_file r_file + w_goal r_goal,      Σ w = 1

    r_nav  = 1{url_t ≠ url_t−1}                       navigation progress
    r_UI   = 1{clicked(role, name) = expected(role, name)}   correct element interaction
    r_form = N_filled / N_expected                    partial form completion, in [0, 1]
    r_file = 1{∃ f ∈ A_t: f.event = "created"}        artifact creation
    r_goal = 1{goal_verified(o_t)}                    verified task completion

with the example instantiation (S3 L3116-3123) nav 0.1, UI 0.2, form 0.2, file 0.3, goal 0.2
(`SEED_WEIGHTS`). The seed also writes w_goal ≥ w_file ≥ w_UI (L3114), which its own table breaks
(file 0.3 > goal 0.2); that ordering is therefore not enforced.

Here a milestone is scored over the whole episode and counted once (reaching a page twice is still
one navigation): `Milestone(name, weight, predicate)` with `predicate(events, expected) -> [0, 1]`,
where `events` is the episode's list of event dicts and `expected` the task's expectations (a dict,
possibly empty). `MilestoneReward.score` is Σ_i w_i m_i; `breakdown` gives each w_i m_i;
`step_rewards` spreads the same total over the events as the increments of that sum on growing
prefixes (a dense per-step r_t whose sum is the episode score).

The built-in detectors read these events (see docs/process_rewards.md):

    {"type": "navigation", "url": "..."}           navigation: a URL that differs from the previous one
                                                   (expected "start_url"); with expected "url", reaching it
    {"type": "click", "role": "...", "name": "..."}  ui: matches every key of expected "click"
    {"type": "fill", "field": "...", "value": "..."} form: distinct filled fields / expected "fields"
                                                   (a list of names, or a count)
    {"type": "file", "event": "created", "path": "..."}  file (expected "file_extension" restricts it)
    {"type": "goal", "verified": true}             goal
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Callable

from posttrain.errors import ConfigError, UserError

SEED_WEIGHTS: dict[str, float] = {"navigation": 0.1, "ui": 0.2, "form": 0.2, "file": 0.3, "goal": 0.2}  # S3 L3116-3123
_SUM_TOLERANCE = 1e-6


# ----------------------------------------------------------------------------------- detectors


def _of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if isinstance(e, dict) and e.get("type") == kind]


def navigated(events: list[dict], expected: dict) -> float:
    """1{url_t ≠ url_t−1} for some navigation event (the first compares with expected "start_url");
    with expected "url", 1 when that URL is reached."""
    target = expected.get("url")
    previous = expected.get("start_url")
    for event in _of_type(events, "navigation"):
        url = event.get("url")
        if (url == target) if target is not None else (url is not None and url != previous):
            return 1.0
        previous = url
    return 0.0


def clicked_expected(events: list[dict], expected: dict) -> float:
    """1 when a click event matches every key of expected "click" (e.g. {"role": "button", "name": "Submit"})."""
    target = expected.get("click")
    if not isinstance(target, dict) or not target:
        raise UserError("the 'ui' milestone needs the expected element, e.g. expected={\"click\": {\"role\": \"button\", "
                        "\"name\": \"Submit\"}}; give it in the expected column or set the ui weight to 0")
    return float(any(all(e.get(k) == v for k, v in target.items()) for e in _of_type(events, "click")))


def form_filled(events: list[dict], expected: dict) -> float:
    """N_filled / N_expected: distinct fields with a non-empty value over expected "fields" (names or a count)."""
    fields = expected.get("fields")
    filled = {e.get("field") for e in _of_type(events, "fill") if e.get("value", True) not in ("", None)}
    if isinstance(fields, list) and fields:
        return len(filled & set(fields)) / len(set(fields))
    if isinstance(fields, int) and not isinstance(fields, bool) and fields > 0:
        return min(1.0, len(filled - {None}) / fields)
    raise UserError("the 'form' milestone needs the expected fields, e.g. expected={\"fields\": [\"email\", \"name\"]} "
                    "or {\"fields\": 2}; give them in the expected column or set the form weight to 0")


def file_created(events: list[dict], expected: dict) -> float:
    """1{∃ f: f.event = "created"}, restricted to paths ending in expected "file_extension" when given."""
    ext = expected.get("file_extension")
    return float(any(e.get("event") == "created" and (ext is None or str(e.get("path", "")).endswith(ext))
                     for e in _of_type(events, "file")))


def goal_verified(events: list[dict], expected: dict) -> float:
    """1{goal_verified}: a goal event with "verified": true."""
    return float(any(e.get("verified") is True for e in _of_type(events, "goal")))


DETECTORS: dict[str, Callable[[list[dict], dict], float]] = {
    "navigation": navigated, "ui": clicked_expected, "form": form_filled, "file": file_created, "goal": goal_verified,
}


# ------------------------------------------------------------------------------------ the reward


@dataclass(frozen=True)
class Milestone:
    name: str
    weight: float
    predicate: Callable[[list[dict], dict], float | bool]  # (events, expected) -> achievement in [0, 1]


class MilestoneReward:
    """Σ_i w_i m_i(events) over milestones counted once per episode; weights ≥ 0 that sum to 1
    unless `weights_sum_to_one=False`."""

    def __init__(self, milestones: list[Milestone], weights_sum_to_one: bool = True):
        names = [m.name for m in milestones]
        if not milestones or len(set(names)) != len(names):
            raise ConfigError(f"milestones need distinct names and at least one milestone, got {names}")
        for m in milestones:
            if not isinstance(m.weight, (int, float)) or isinstance(m.weight, bool) or not math.isfinite(m.weight) or m.weight < 0:
                raise ConfigError(f"milestone '{m.name}' has weight {m.weight!r}; weights must be finite numbers >= 0")
        total = sum(m.weight for m in milestones)
        if weights_sum_to_one and abs(total - 1.0) > _SUM_TOLERANCE:
            listed = ", ".join(f"{m.name}={m.weight:g}" for m in milestones)
            raise ConfigError(f"milestone weights sum to {total:g} ({listed}); make them sum to 1 "
                              "or set weights_sum_to_one=false")
        self.milestones, self.weights_sum_to_one = list(milestones), weights_sum_to_one

    @classmethod
    def seed_example(cls, weights_sum_to_one: bool = True, **overrides: float) -> "MilestoneReward":
        """Seed 003's five milestones with its example weights, any of them overridden by name."""
        return cls([Milestone(n, w, DETECTORS[n]) for n, w in SEED_WEIGHTS.items()]).with_weights(
            overrides, weights_sum_to_one)

    def with_weights(self, overrides: dict[str, float], weights_sum_to_one: bool | None = None) -> "MilestoneReward":
        unknown = sorted(set(overrides) - {m.name for m in self.milestones})
        if unknown:
            raise ConfigError(f"unknown milestone(s) {', '.join(unknown)}; milestones are: "
                              f"{', '.join(m.name for m in self.milestones)}")
        keep = self.weights_sum_to_one if weights_sum_to_one is None else weights_sum_to_one
        return MilestoneReward([Milestone(m.name, overrides.get(m.name, m.weight), m.predicate) for m in self.milestones], keep)

    def achievements(self, events: list[dict], expected: dict | None = None) -> dict[str, float]:
        """m_i ∈ [0, 1] per milestone (milestones with weight 0 are not evaluated: 0)."""
        expected = expected or {}
        out = {}
        for m in self.milestones:
            value = float(m.predicate(events, expected)) if m.weight > 0 else 0.0
            if not 0.0 <= value <= 1.0:
                raise UserError(f"milestone '{m.name}' returned {value}; a milestone's achievement must be in [0, 1]")
            out[m.name] = value
        return out

    def breakdown(self, events: list[dict], expected: dict | None = None) -> dict[str, float]:
        """w_i m_i per milestone; the values sum to `score`."""
        weights = {m.name: m.weight for m in self.milestones}
        return {name: weights[name] * value for name, value in self.achievements(events, expected).items()}

    def score(self, events: list[dict], expected: dict | None = None) -> float:
        return sum(self.breakdown(events, expected).values())

    def step_rewards(self, events: list[dict], expected: dict | None = None) -> list[float]:
        """r_t = score(events[:t+1]) − score(events[:t]) per event: the progress each event makes
        (a milestone pays once, when first reached); the r_t sum to `score(events)`."""
        scores = [self.score(events[:t], expected) for t in range(len(events) + 1)]
        return [b - a for a, b in zip(scores, scores[1:])]


def _events_of(value, row: int, column: str) -> list[dict]:
    """A cell's events: a list of dicts, or its JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(f"completion {row}: column '{column}' is not a JSON list of event objects") from None
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise UserError(f"completion {row}: column '{column}' must be a list of event objects like "
                        "{\"type\": \"navigation\", \"url\": \"...\"}")
    return value


def _expected_of(value, row: int, column: str) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict):
        raise UserError(f"completion {row}: column '{column}' must be an object of expectations like "
                        "{\"click\": {\"role\": \"button\", \"name\": \"Submit\"}, \"fields\": 2}")
    return value


def milestone_reward(events_column: str = "events", expected_column: str = "expected", navigation: float = 0.1,
                     ui: float = 0.2, form: float = 0.2, file: float = 0.3, goal: float = 0.2,
                     weights_sum_to_one: bool = True):
    """Registry factory (`milestone[:navigation=0.1:ui=0.2:...]`): seed 003's milestone reward of each
    episode, read from the `events_column` (and its expectations from `expected_column`, optional).
    A completion whose events cell is None gets None (the reward does not apply)."""
    rewarder = MilestoneReward.seed_example(weights_sum_to_one, navigation=navigation, ui=ui, form=form, file=file,
                                            goal=goal)

    def milestone(prompts, completions, log_metric=None, **columns) -> list[float | None]:
        if events_column not in columns:
            raise UserError(f"the milestone reward reads each episode's events from column '{events_column}', which "
                            f"the data does not have (columns: {', '.join(sorted(columns)) or 'none'}); add it or set "
                            "events_column=NAME")
        events = columns[events_column]
        expected = columns.get(expected_column) or [None] * len(completions)
        reached = [None if cell is None else rewarder.achievements(_events_of(cell, i, events_column), _expected_of(want, i, expected_column))
                   for i, (cell, want) in enumerate(zip(events, expected))]
        scored = [r for r in reached if r is not None]
        if log_metric is not None and scored:  # TRL's keyword: each milestone's share of episodes, milestone/<name>
            for m in rewarder.milestones:
                log_metric(f"milestone/{m.name}", sum(r[m.name] for r in scored) / len(scored))
        weights = {m.name: m.weight for m in rewarder.milestones}
        return [None if r is None else sum(weights[name] * value for name, value in r.items()) for r in reached]

    milestone.rewarder = rewarder  # the weights and detectors in use, for inspection
    best = sum(m.weight for m in rewarder.milestones)
    if best > 0:
        milestone.reward_range = (0.0, float(best))  # every milestone reached
    return milestone
