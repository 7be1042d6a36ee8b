"""Find scoring functions: an embedded task's scorers, or a TRL-style reward function by reference."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Callable

from posttrain.errors import UserError


def load_callable(ref: str) -> Callable:
    """`package.module:function` or `path/to/file.py:function`."""
    if ":" not in ref:
        raise UserError(f"scorer '{ref}' is not task:NAME, module:function or file.py:function")
    target, name = ref.rsplit(":", 1)
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise UserError(f"scorer file not found: {target}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # user code: report it as one line
            raise UserError(f"importing {target} failed: {type(exc).__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise UserError(f"cannot import module '{target}' for scorer '{ref}' ({exc})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"'{name}' in {target} is not a function; expected f(prompts, completions, **columns) -> list[float]")
    return fn


def resolve_scorers(scorer: str | None, dataset: str) -> dict[str, Callable]:
    """Named scoring functions; the first one is the headline metric."""
    from posttrain.data.sources import is_task_source, parse_task_source

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
