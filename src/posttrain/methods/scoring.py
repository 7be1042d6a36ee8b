"""Find the eval stage's scoring functions: reward specs, exactly as `reward_funcs` reads them (`rewards.functions`)."""

from __future__ import annotations

from typing import Callable

from posttrain.errors import UserError

MATH_BENCHMARKS = ("gsm8k", "math", "aime")  # tasks.benchmarks' row tag: scored by math_accuracy by default


def resolve_scorers(specs: list[str] | str | None, dataset: str, rows: list[dict] | None = None,
                    required: bool = True) -> dict[str, Callable]:
    """Named scoring functions, the first the headline metric: every spec `reward_funcs` takes (task,
    task::SCORER, task:NAME[:SCORER], a built-in NAME[:key=value...], module:function, file.py:function).
    With no `specs`: the task's own scorers, `math_accuracy` for a math benchmark's rows
    (`tasks.benchmarks`), else none when not `required` (an LLM judge scores instead)."""
    from posttrain.errors import naming_option
    from posttrain.rewards.functions import resolve_specs
    from posttrain.tasks.sources import is_task_source

    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        if is_task_source(dataset):
            specs = ["task"]
        elif rows and rows[0].get("benchmark") in MATH_BENCHMARKS:
            specs = ["math_accuracy"]
        elif not required:
            return {}
        else:
            raise UserError("eval on a prompt file needs scorer=task:NAME, a built-in reward (math_accuracy, format, ...), "
                            "module:function or file.py:function (or judge=... for an LLM judge)")
    with naming_option("scorer"):
        return resolve_specs(specs, dataset, "scorer")
