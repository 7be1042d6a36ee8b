"""Find scoring functions: an embedded task's scorers, or a TRL-style reward function by reference."""

from __future__ import annotations

from typing import Callable

from posttrain.callables import load_callable
from posttrain.errors import UserError


def resolve_scorers(scorer: str | None, dataset: str) -> dict[str, Callable]:
    """Named scoring functions; the first one is the headline metric."""
    from posttrain.tasks.sources import is_task_source, parse_task_source

    if scorer is None:
        if not is_task_source(dataset):
            raise UserError("eval on a prompt file needs scorer=task:NAME, module:function or file.py:function")
        scorer = "task:" + parse_task_source(dataset)[0]
    if scorer.startswith("task:"):
        from posttrain.tasks import get_task

        task = get_task(scorer[len("task:"):])
        return {"score": task.score, **task.scorers}
    return {"score": load_callable(scorer)}


def call_scorer(name: str, fn: Callable, prompts, completions, columns: dict) -> list[float]:
    try:
        values = fn(prompts, completions, **columns)
    except Exception as exc:  # user code: one line naming it, not a traceback
        raise UserError(f"scoring function '{name}' raised {type(exc).__name__}: {exc}") from None
    if len(values) != len(completions):
        raise UserError(f"scoring function '{name}' returned {len(values)} values for {len(completions)} completions")
    return [float("nan") if v is None else float(v) for v in values]
