"""Find scoring functions: an embedded task's scorers, a built-in reward, or a TRL-style reward function by reference."""

from __future__ import annotations

from typing import Callable

from posttrain.callables import load_callable
from posttrain.errors import UserError


def resolve_scorers(scorer: str | None, dataset: str, rows: list[dict] | None = None,
                    required: bool = True) -> dict[str, Callable]:
    """Named scoring functions; the first one is the headline metric. With no `scorer`: the task's own
    scorers, `math_accuracy` for a math benchmark's rows (`tasks.benchmarks`), else none when not
    `required` (an LLM judge scores instead)."""
    from posttrain.tasks.sources import is_task_source, parse_task_source

    if scorer is None and not is_task_source(dataset):
        if rows and rows[0].get("benchmark") in ("gsm8k", "math", "aime"):
            from posttrain.rewards.math import math_accuracy

            return {"score": math_accuracy()}
        if not required:
            return {}
        raise UserError("eval on a prompt file needs scorer=task:NAME, module:function or file.py:function "
                        "(or judge=... for an LLM judge)")
    if scorer is None:
        scorer = "task:" + parse_task_source(dataset)[0]
    if scorer.startswith("task:"):
        from posttrain.tasks import get_task

        task = get_task(scorer[len("task:"):])
        return {"score": task.score, **task.scorers}
    from posttrain.rewards.registry import BUILTIN, build

    if scorer.split(":")[0] in BUILTIN:  # a built-in reward spec, e.g. math_accuracy:mode=integer
        return {"score": build(scorer)[1]}
    return {"score": load_callable(scorer)}


def call_scorer(name: str, fn: Callable, prompts, completions, columns: dict) -> list[float]:
    try:
        values = fn(prompts, completions, **columns)
    except Exception as exc:  # user code: one line naming it, not a traceback
        raise UserError(f"scoring function '{name}' raised {type(exc).__name__}: {exc}") from None
    if len(values) != len(completions):
        raise UserError(f"scoring function '{name}' returned {len(values)} values for {len(completions)} completions")
    return [float("nan") if v is None else float(v) for v in values]
