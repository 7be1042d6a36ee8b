"""TRL's metric names beside ours, and what TRL-style reward functions log, for the online stages.

Metric names: every online record carries TRL's name (GRPOTrainer._generate_and_score_completions
and _compute_loss) beside ours for each metric both have, so a dashboard or script written for TRL
reads posttrain's metrics.jsonl unchanged, while our names (the report, the console) stay:

    ours                                     TRL
    reward/mean, reward/std                  reward, reward_std
    reward/<func>/mean, reward/<func>/std    rewards/<func>/mean, rewards/<func>/std
    completion/mean_length, max_length       completions/mean_length, completions/max_length
    completion/min_length                    completions/min_length
    completion/truncation_rate               completions/clipped_ratio
    completion/*_terminated_length           completions/*_terminated_length
    groups/zero_std_fraction                 frac_reward_zero_std
    clip_ratio/low, high, region             clip_ratio/low_mean, high_mean, region_mean
    kl, entropy                              (the same names)

Reward functions' `log_metric(name, value)` values are averaged over the round (every process's) and
logged under `name`; `log_extra(column, values)` columns go, with the round's prompts, completions
and rewards, to OUTPUT_DIR/completions.jsonl (one row per completion, with `step`), TRL's
completions table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import posttrain.ranks as ranks

TRL_NAMES = {
    "reward/mean": "reward", "reward/std": "reward_std",
    "completion/mean_length": "completions/mean_length", "completion/max_length": "completions/max_length",
    "completion/min_length": "completions/min_length", "completion/truncation_rate": "completions/clipped_ratio",
    "completion/mean_terminated_length": "completions/mean_terminated_length",
    "completion/min_terminated_length": "completions/min_terminated_length",
    "completion/max_terminated_length": "completions/max_terminated_length",
    "groups/zero_std_fraction": "frac_reward_zero_std",
    "clip_ratio/low": "clip_ratio/low_mean", "clip_ratio/high": "clip_ratio/high_mean", "clip_ratio/region": "clip_ratio/region_mean",
}
_PER_FUNCTION = re.compile(r"^reward/(.+)/(mean|std)$")


def trl_name(key: str) -> str | None:
    """TRL's name for our metric `key` (None when TRL has none)."""
    if key in TRL_NAMES:
        return TRL_NAMES[key]
    match = _PER_FUNCTION.match(key)
    return f"rewards/{match[1]}/{match[2]}" if match else None


def with_trl_names(metrics: dict) -> dict:
    """`metrics` with TRL's name added beside ours for each metric TRL has."""
    return metrics | {trl_name(k): v for k, v in metrics.items() if trl_name(k) is not None}


def length_metrics(lengths: list[int], terminated: list[int]) -> dict[str, float]:
    """Min, and the lengths of the completions that ended before max_new_tokens (TRL's *_terminated_length)."""
    out = {"completion/min_length": float(min(lengths, default=0))}
    out["completion/mean_terminated_length"] = sum(terminated) / len(terminated) if terminated else 0.0
    out["completion/min_terminated_length"] = float(min(terminated, default=0))
    out["completion/max_terminated_length"] = float(max(terminated, default=0))
    return out


def take_logged(rewards, log: dict, prompts: list, samples: list) -> None:
    """Move what the reward functions logged during one scoring call into the round's `log`: the
    log_metric values, and the log_extra columns as rows of that call's completions."""
    pop = getattr(rewards, "pop_logged", None)
    if pop is None:
        return
    metrics, extra = pop()
    for name, values in metrics.items():
        log.setdefault("logged", {}).setdefault(name, []).extend(values)
    if extra:
        rows = [{"prompt": p, "completion": s.extra.get("text"), "reward": s.reward} for p, s in zip(prompts, samples)]
        for column, values in extra.items():
            for row, value in zip(rows, values):
                row[column] = value
        log.setdefault("table", []).extend(rows)


def logged_metrics(parts: list[dict]) -> dict[str, float]:
    """Each log_metric name's mean over every process's values of the round (TRL: total / count)."""
    names = sorted({n for p in parts for n in p.get("logged", {})})
    out = {}
    for name in names:
        values = [v for p in parts for v in p.get("logged", {}).get(name, [])]
        out[name] = sum(values) / len(values)
    return out


def write_completions(output_dir: str, step: int, parts: list[dict]) -> None:
    """Append the round's log_extra rows (every process's) to OUTPUT_DIR/completions.jsonl (rank 0)."""
    rows = [row for p in parts for row in p.get("table", [])]
    if not rows or not ranks.is_main():
        return
    with open(Path(output_dir) / "completions.jsonl", "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({"step": step, **row}, default=str) + "\n")
