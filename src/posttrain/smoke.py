"""`POSTTRAIN_SMOKE=1`: every command runs for seconds, to try commands (and to test the docs).

With the variable set, each stage's options that drive its cost (steps, prompts, samples, tokens,
iterations) are capped, and every dataset is read only to its first 64 rows, to the small values below, whatever the defaults, a YAML file or `key=value`
said; everything else is untouched, so a command still does exactly what it says, on a sliver of the
work. Each capped option is printed (`posttrain: POSTTRAIN_SMOKE=1 caps ...`) so a smoke run is never
mistaken for a real one. The results mean nothing; the point is that the command runs end to end.
"""

from __future__ import annotations

import os
import sys

ENV = "POSTTRAIN_SMOKE"

# option: its cap. An option at 0 meaning "derive it" or "all" (max_steps, limit, max_new_tokens of
# eval) is set to the cap too; 0 meaning "none" (eval_prompts) stays 0.
CAPS: dict[str, int] = {
    "max_steps": 2,
    "batch_size": 1,  # so even a handful of kept samples fills a step
    "gradient_accumulation_steps": 1,
    "max_new_tokens": 96,  # long enough for an arithmetic answer to finish
    "critique_max_new_tokens": 16,
    "revision_max_new_tokens": 16,
    "prompts": 8,
    "eval_prompts": 4,
    "prompts_per_iteration": 4,
    "prompts_per_step": 4,
    "report_prompts": 2,
    "limit": 8,
    "eval_limit": 8,
    "iterations": 1,
    "num_iterations": 1,
    "num_generations": 4,
    "num_samples": 4,
    "best_of_n": 4,
}
ZERO_MEANS_NONE = {"eval_prompts"}
ROWS = 64  # rows read from any dataset (training, held-out, prompts)
_rows_noted: set[str] = set()


def enabled() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def _cap(key: str, value, cap: int):
    if isinstance(value, list):  # best_of_n=[4, 16] -> [4]
        return sorted({min(v, cap) for v in value})
    if key in ZERO_MEANS_NONE and value == 0:
        return value
    return cap if value <= 0 else min(value, cap)


def cap_values(values: dict, defaults: dict, where: str) -> dict:
    """`values` with every capped option of the config (given or default) at most its cap; prints
    one line naming what changed (nothing when the variable is unset)."""
    if not enabled():
        return values
    out, changed = dict(values), []
    for key, cap in CAPS.items():
        if key not in defaults:
            continue
        current = out.get(key, defaults[key])
        if isinstance(current, bool) or not isinstance(current, (int, float, list)):
            continue  # a wrong type: build_config reports it
        capped = _cap(key, current, cap)
        if capped != current:
            out[key] = capped
            changed.append(f"{key} {current}->{capped}")
    if changed:
        print(f"posttrain: {ENV}=1 caps {where}: {', '.join(changed)}", file=sys.stderr, flush=True)
    return out


def cap_rows(rows: list, source: str) -> list:
    """The first ROWS rows of `source` under the variable (noted once per source), else all."""
    if not enabled() or len(rows) <= ROWS:
        return rows
    if source not in _rows_noted:
        _rows_noted.add(source)
        print(f"posttrain: {ENV}=1 reads the first {ROWS} of {len(rows)} rows of {source}", file=sys.stderr, flush=True)
    return rows[:ROWS]
