"""Call a weighted set of reward functions on a batch of completions, with a failure policy.

Every function is called as `f(prompts, completions, **columns)` (TRL's convention: `columns` are
the dataset's other columns, one value per completion) and returns one value per completion:

- a number: its reward;
- `None`: the function does not apply to this sample (TRL's convention); the weighted sum skips it.
  A sample for which every function returns None has no reward and is masked out of the loss.

What counts as a failure — the function raises, returns NaN or ±inf — is an error by default
(`on_error="raise"`: one line naming the function, exit code 2). With `on_error="mask"` the failing
values become None (a raising function: its whole batch) and the trainer masks and counts them.
Returning the wrong number of values is always an error: the rewards could not be aligned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from posttrain.errors import ConfigError, UserError

ON_ERROR = ("raise", "mask")


@dataclass
class RewardResult:
    total: list[float | None]  # the weighted sum per completion; None: no usable reward (masked)
    per_function: dict[str, list[float | None]]
    failures: dict[str, int] = field(default_factory=dict)  # values turned into None, per function

    @property
    def num_masked(self) -> int:
        return sum(v is None for v in self.total)


class RewardFunctions:
    def __init__(self, functions: dict[str, Callable], weights: list[float] | None = None, on_error: str = "raise"):
        if on_error not in ON_ERROR:
            raise ConfigError(f"reward_errors must be one of {ON_ERROR}, got {on_error!r}")
        if weights is not None and len(weights) != len(functions):
            raise ConfigError(f"reward_weights has {len(weights)} entries for {len(functions)} reward functions "
                              f"({', '.join(functions)}); give one weight per function")
        self.functions, self.on_error = dict(functions), on_error
        self.weights = list(weights) if weights is not None else [1.0] * len(functions)

    @classmethod
    def resolve(cls, specs: list[str], dataset: str, weights: list[float] | None = None, on_error: str = "raise"):
        """`task` (the dataset's embedded task's scorers, e.g. accuracy + format), `task:NAME`,
        `task:NAME:SCORER`, a built-in `NAME[:key=value...]` (see `registry`), `module:function` or
        `path/file.py:function`."""
        from posttrain.data.sources import is_task_source, parse_task_source
        from posttrain.eval.scoring import load_callable
        from posttrain.rewards import registry
        from posttrain.tasks import get_task

        functions: dict[str, Callable] = {}
        for spec in specs:
            if spec == "task" or spec.startswith("task:"):
                if spec == "task":
                    if not is_task_source(dataset):
                        raise ConfigError("reward_funcs=[task] needs dataset=task:NAME; name your functions "
                                          "(module:function or file.py:function) for other data")
                    spec = "task:" + parse_task_source(dataset)[0]
                parts = spec.split(":")
                task = get_task(parts[1])
                chosen = {parts[2]: task.scorers[parts[2]]} if len(parts) > 2 and parts[2] in task.scorers else task.scorers
                if len(parts) > 2 and parts[2] not in task.scorers:
                    raise ConfigError(f"task {parts[1]} has no scorer '{parts[2]}'; it has {', '.join(task.scorers)}")
                functions.update(chosen)
            elif registry.is_builtin(spec):
                name, fn = registry.build(spec)
                functions[name if name not in functions else f"{name}_{len(functions)}"] = fn
            else:
                functions[spec.rsplit(":", 1)[-1]] = load_callable(spec)
        if not functions:
            raise ConfigError("reward_funcs is empty; give at least one reward function")
        return cls(functions, weights, on_error)

    def __call__(self, prompts: list, completions: list, columns: dict[str, list]) -> RewardResult:
        per_function, failures = {}, {}
        for name, fn in self.functions.items():
            values, failed = self._call_one(name, fn, prompts, completions, columns)
            per_function[name], failures[name] = values, failed
        total: list[float | None] = []
        for i in range(len(completions)):
            parts = [w * per_function[name][i] for name, w in zip(self.functions, self.weights) if per_function[name][i] is not None]
            total.append(sum(parts) if parts else None)
        return RewardResult(total, per_function, {k: v for k, v in failures.items() if v})

    def _call_one(self, name, fn, prompts, completions, columns) -> tuple[list[float | None], int]:
        try:
            values = list(fn(prompts, completions, **columns))
        except Exception as exc:  # user code: one line naming it
            if self.on_error == "raise":
                raise UserError(f"reward function '{name}' raised {type(exc).__name__}: {exc} "
                                "(set reward_errors=mask to mask such samples instead)") from None
            return [None] * len(completions), len(completions)
        if len(values) != len(completions):
            raise UserError(f"reward function '{name}' returned {len(values)} values for {len(completions)} completions; "
                            "it must return one value (or None) per completion")
        out, failed = [], 0
        for i, value in enumerate(values):
            if value is None:
                out.append(None)
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not math.isfinite(number):
                if self.on_error == "raise":
                    raise UserError(f"reward function '{name}' returned {value!r} for completion {i}; rewards must be "
                                    "finite numbers or None (set reward_errors=mask to mask such samples instead)")
                out.append(None)
                failed += 1
            else:
                out.append(number)
        return out, failed
