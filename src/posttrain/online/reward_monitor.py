"""Reward-hacking diagnostics: for every reward and monitor function, the share of samples at its
maximum and sudden jumps of its mean; for every monitor (gold) function, the trained reward's gap to it.

The policy is an adversary of its reward: a run that finds a way to earn reward without doing the
task shows it as a reward that saturates (every sample at the maximum), moves abruptly, or climbs
while a reward it is not trained on (`monitor_funcs=`, weight 0) stays flat. Each generation round
`RewardMonitor.update` reads every sample of the round (every process's, gathered, so each process
computes the same numbers and keeps the same state) and returns, for a function logged under
prefix P (`reward/<name>` or `monitor/<name>`):

- `P/at_max`: the share of the round's values (None left out) at the function's maximum, within
  1e-6 (relative, at least absolute 1e-6). The maximum is the one the function declares
  (`reward_range = (low, high)`; the built-ins with a fixed range and the embedded tasks' scorers
  declare theirs) and otherwise the largest value seen so far in the run, this round's included.
- `P/jump_z`: the round mean's robust z-score against the means of the previous `JUMP_WINDOW`
  rounds: (mean − median) / max(1.4826 · MAD, `JUMP_FLOOR` · span, SE), where MAD is the median
  absolute deviation of those means, span the declared range's width (else the range of values seen
  so far) and SE the sampling noise of a round's mean: the larger of this round's standard error
  (sample std / √n) and the median of the window's. 0 until `JUMP_MIN_HISTORY` rounds of history
  exist. The floor keeps a flat history (MAD 0) from calling every wiggle a jump, and SE keeps a
  small noisy round (16 samples of a 0/1 reward, all 0 by chance) from passing for one.
- `P/jump`: 1 on the round where |jump_z| first exceeds `JUMP_THRESHOLD` (a level shift is flagged
  once, at its onset, though jump_z stays high while the window catches up), else 0. `update` also
  returns each jump as a `Jump` for the console.

And for each monitor function g, over the samples where both the trained reward (the weighted sum of
the reward functions, before DAPO's overlong shaping) and g have a value:

- `monitor/<g>/proxy` and `monitor/<g>/gold`: their means, each on a 0..1 scale when its range is
  declared ((v − low) / (high − low); the weighted sum's range is Σ min(w·low, w·high) .. Σ
  max(w·low, w·high), declared when every reward function declares one), else in its own units;
- `monitor/<g>/gap`: proxy − gold (positive and growing: the trained reward runs ahead of the gold);
- `monitor/<g>/correlation`: their Pearson correlation over the round's samples; left out when
  fewer than 2 pairs or either side is constant.

With `logging_steps` > 1 a logged value is the mean over the rounds of the logging window (so `jump`
is then the share of those rounds that jumped); the console line of a jump names its exact step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

AT_MAX_TOLERANCE = 1e-6
JUMP_WINDOW = 10  # rounds of history a round's mean is compared with
JUMP_MIN_HISTORY = 5  # rounds of history before a jump can be called
JUMP_THRESHOLD = 4.0  # robust standard deviations
JUMP_FLOOR = 0.05  # the robust std never counts as less than this share of the function's span
MAD_TO_STD = 1.4826  # MAD x this estimates the std of normal data

Range = tuple[float, float]


def _present(values) -> list[float]:
    return [float(v) for v in values if v is not None]


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def share_at_max(values, maximum: float) -> float | None:
    """The share of `values` (None left out) within AT_MAX_TOLERANCE of `maximum`, or above it; None when empty."""
    present = _present(values)
    if not present:
        return None
    tolerance = AT_MAX_TOLERANCE * max(1.0, abs(maximum))
    return sum(v >= maximum - tolerance for v in present) / len(present)


def robust_z(mean: float, history: list[float], span: float, standard_error: float = 0.0) -> float:
    """(mean − median(history)) / max(1.4826 · MAD(history), JUMP_FLOOR · span, standard_error); 0 with
    too little history (JUMP_MIN_HISTORY) or nothing to scale by."""
    if len(history) < JUMP_MIN_HISTORY:
        return 0.0
    center = _median(history)
    spread = max(MAD_TO_STD * _median([abs(h - center) for h in history]), JUMP_FLOOR * span, standard_error)
    return (mean - center) / spread if spread > 0 else 0.0


def _constant(xs: list[float]) -> bool:
    return max(xs) - min(xs) <= 1e-12 * max(1.0, max(abs(x) for x in xs))  # float noise is no variation


def standard_error(xs: list[float]) -> float:
    """The sample std of `xs` over √n: the standard error of their mean (0 for fewer than 2)."""
    n = len(xs)
    if n < 2:
        return 0.0
    m = sum(xs) / n
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1) / n)


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """The Pearson correlation of paired values; None with fewer than 2 pairs or a constant side."""
    n = len(xs)
    if n < 2 or _constant(xs) or _constant(ys):
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def scaled(value: float, declared: Range | None) -> float:
    """`value` on 0..1 of its declared range, or as it is without one."""
    return value if declared is None else (value - declared[0]) / (declared[1] - declared[0])


@dataclass
class Jump:
    prefix: str  # "reward/<name>" or "monitor/<name>"
    step: int
    mean: float
    center: float  # the median of the window it is compared with
    z: float

    def line(self) -> str:
        kind, name = self.prefix.split("/", 1)
        direction = "up" if self.z > 0 else "down"
        return (f"posttrain: {kind} '{name}' jumped {direction} at step {self.step}: round mean {self.mean:.4g} against "
                f"{self.center:.4g} over the last rounds ({self.z:+.1f} robust std); if it jumped up, read its samples "
                "for reward hacking")


class RewardMonitor:
    """The diagnostics' state over a run (kept in checkpoints): per prefix, the recent round means, the
    range of values seen and the last z-score; `update` once per round."""

    def __init__(self, reward_ranges: dict[str, Range | None], monitor_ranges: dict[str, Range | None],
                 total_range: Range | None):
        self.declared = {f"reward/{k}": v for k, v in reward_ranges.items()} | {f"monitor/{k}": v for k, v in monitor_ranges.items()}
        self.total_range = total_range
        self.history: dict[str, list[list[float]]] = {}  # prefix -> [round mean, its standard error] of recent rounds
        self.seen: dict[str, list[float]] = {}  # prefix -> [lowest, highest] value so far
        self.last_z: dict[str, float] = {}

    def update(self, step: int, rewards: dict[str, list], monitors: dict[str, list], total: list) -> tuple[dict[str, float], list[Jump]]:
        """Metrics and jumps of a round: `rewards` / `monitors` map a function's name to its value per
        sample (None: no value), `total` the trained reward per sample, all aligned and covering every
        process's samples."""
        metrics: dict[str, float] = {}
        jumps: list[Jump] = []
        columns = {f"reward/{k}": v for k, v in rewards.items()} | {f"monitor/{k}": v for k, v in monitors.items()}
        for prefix, values in columns.items():
            present = _present(values)
            if not present:
                continue
            seen = self.seen.setdefault(prefix, [min(present), max(present)])
            seen[0], seen[1] = min(seen[0], *present), max(seen[1], *present)
            declared = self.declared.get(prefix)
            metrics[f"{prefix}/at_max"] = share_at_max(present, declared[1] if declared else seen[1])
            mean = sum(present) / len(present)
            history = self.history.setdefault(prefix, [])
            span = (declared[1] - declared[0]) if declared else seen[1] - seen[0]
            noise = standard_error(present)
            typical = max(noise, _median([se for _, se in history])) if history else noise
            z = robust_z(mean, [m for m, _ in history], span, typical)
            previous = self.last_z.get(prefix, 0.0)
            onset = abs(z) > JUMP_THRESHOLD and not (abs(previous) > JUMP_THRESHOLD and previous * z > 0)
            metrics[f"{prefix}/jump_z"], metrics[f"{prefix}/jump"] = z, float(onset)
            if onset:
                jumps.append(Jump(prefix, step, mean, _median([m for m, _ in history]), z))
            self.last_z[prefix] = z
            history.append([mean, noise])
            del history[:-JUMP_WINDOW]
        for name, values in monitors.items():
            metrics.update(self._gap(name, total, values))
        return metrics, jumps

    def _gap(self, name: str, total: list, gold: list) -> dict[str, float]:
        pairs = [(scaled(float(t), self.total_range), scaled(float(g), self.declared.get(f"monitor/{name}")))
                 for t, g in zip(total, gold) if t is not None and g is not None]
        if not pairs:
            return {}
        proxy, truth = [p for p, _ in pairs], [g for _, g in pairs]
        out = {f"monitor/{name}/proxy": sum(proxy) / len(pairs), f"monitor/{name}/gold": sum(truth) / len(pairs)}
        out[f"monitor/{name}/gap"] = out[f"monitor/{name}/proxy"] - out[f"monitor/{name}/gold"]
        r = pearson(proxy, truth)
        if r is not None:
            out[f"monitor/{name}/correlation"] = r
        return out

    def state_dict(self) -> dict:
        return {"history": {k: [list(x) for x in v] for k, v in self.history.items()}, "seen": {k: list(v) for k, v in self.seen.items()},
                "last_z": dict(self.last_z)}

    def load_state_dict(self, state: dict) -> None:
        self.history = {k: [list(x) for x in v] for k, v in state.get("history", {}).items()}
        self.seen = {k: list(v) for k, v in state.get("seen", {}).items()}
        self.last_z = dict(state.get("last_z", {}))
