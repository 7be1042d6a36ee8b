"""Call a weighted set of reward functions on a batch of completions, with a failure policy.

Every function is called as `f(prompts=..., completions=..., completion_ids=..., **columns)`, by
keyword exactly as TRL's GRPOTrainer calls it (`columns` are the dataset's other columns, one value
per completion), so a TRL reward function such as `def f(completions, solution, **kwargs)` works
unchanged. It returns one value per completion:

- a number: its reward;
- `None`: the function does not apply to this sample (TRL's convention); the weighted sum skips it.
  A sample for which every function returns None has no reward and is masked out of the loss.

What counts as a failure — the function raises, returns NaN or ±inf — is an error by default
(`on_error="raise"`: one line naming the function, exit code 2). With `on_error="mask"` the failing
values become None (a raising function: its whole batch) and the trainer masks and counts them.
Returning the wrong number of values is always an error: the rewards could not be aligned.

Concurrency: with several functions, the synchronous ones run in a thread pool of at most
`workers` threads (a model-based reward and a code sandbox overlap instead of queueing), and
`async def` functions run together on one event loop (`asyncio.gather`), as in TRL.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from concurrent.futures import ThreadPoolExecutor
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
    def __init__(self, functions: dict[str, Callable], weights: list[float] | None = None, on_error: str = "raise",
                 workers: int = 4):
        if on_error not in ON_ERROR:
            raise ConfigError(f"reward_errors must be one of {ON_ERROR}, got {on_error!r}")
        if weights is not None and len(weights) != len(functions):
            raise ConfigError(f"reward_weights has {len(weights)} entries for {len(functions)} reward functions "
                              f"({', '.join(functions)}); give one weight per function")
        if workers < 1:
            raise ConfigError(f"reward_workers must be >= 1, got {workers}")
        self.functions, self.on_error, self.workers = dict(functions), on_error, workers
        self.weights = list(weights) if weights is not None else [1.0] * len(functions)

    @classmethod
    def from_options(cls, options, dataset: str):
        """`resolve` with a config's reward options (options.RewardOptions: reward_funcs, reward_weights,
        reward_workers, and reward_errors where the stage has it, else raise)."""
        return cls.resolve(options.reward_funcs, dataset, options.reward_weights, getattr(options, "reward_errors", "raise"),
                           options.reward_workers)

    @classmethod
    def resolve(cls, specs: list[str], dataset: str, weights: list[float] | None = None, on_error: str = "raise",
                workers: int = 4):
        """`task` (the dataset's embedded task's scorers, e.g. accuracy + format), `task::SCORER` (one
        scorer of the dataset's task), `task:NAME`, `task:NAME:SCORER`, a built-in `NAME[:key=value...]`
        (see `registry`), `module:function` or `path/file.py:function`."""
        from posttrain.callables import load_callable
        from posttrain.rewards import registry

        functions: dict[str, Callable] = {}
        for spec in specs:
            if spec == "task" or spec.startswith("task:"):
                functions.update(_task_scorers(spec, dataset))
            elif registry.is_builtin(spec):
                name, fn = registry.build(spec)
                functions[name if name not in functions else f"{name}_{len(functions)}"] = fn
            elif ":" not in spec:
                raise ConfigError(f"unknown reward '{spec}'; give a built-in ({', '.join(sorted(registry.BUILTIN))}), "
                                  "task, task:NAME, module:function or file.py:function")
            else:
                functions[spec.rsplit(":", 1)[-1]] = load_callable(spec)
        if not functions:
            raise ConfigError("reward_funcs is empty; give at least one reward function")
        return cls(functions, weights, on_error, workers)

    def __call__(self, prompts: list, completions: list, columns: dict[str, list],
                 completion_ids: list[list[int]] | None = None) -> RewardResult:
        kwargs = dict(columns, prompts=prompts, completions=completions)
        if completion_ids is not None:
            kwargs["completion_ids"] = completion_ids
        raw = self._call_all(kwargs)
        per_function, failures = {}, {}
        for name in self.functions:
            values, failed = self._check(name, raw[name], len(completions))
            per_function[name], failures[name] = values, failed
        total: list[float | None] = []
        for i in range(len(completions)):
            parts = [w * per_function[name][i] for name, w in zip(self.functions, self.weights) if per_function[name][i] is not None]
            total.append(sum(parts) if parts else None)
        return RewardResult(total, per_function, {k: v for k, v in failures.items() if v})

    def _call_all(self, kwargs: dict) -> dict[str, list | BaseException]:
        """Each function's raw output (or the exception it raised), sync ones in a bounded pool."""
        async_names = [n for n, fn in self.functions.items() if _is_async(fn)]
        sync_names = [n for n in self.functions if n not in async_names]
        jobs = {name: (lambda name=name: _capture(lambda: list(self.functions[name](**kwargs)))) for name in sync_names}
        if async_names:
            jobs[tuple(async_names)] = lambda: asyncio.run(self._gather(async_names, kwargs))
        if len(jobs) == 1 or self.workers == 1:
            done = {key: job() for key, job in jobs.items()}
        else:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs))) as pool:
                futures = {key: pool.submit(job) for key, job in jobs.items()}
                done = {key: future.result() for key, future in futures.items()}
        raw = {name: done[name] for name in sync_names}
        if async_names:
            raw.update(zip(async_names, done[tuple(async_names)]))
        return raw

    async def _gather(self, names: list[str], kwargs: dict) -> list:
        async def one(name):
            try:
                return list(await self.functions[name](**kwargs))
            except Exception as exc:  # reported by _check, by name
                return exc
        return await asyncio.gather(*(one(name) for name in names))

    def _check(self, name: str, values, count: int) -> tuple[list[float | None], int]:
        if isinstance(values, BaseException):  # user code raised: one line naming it
            if self.on_error == "raise":
                raise UserError(f"reward function '{name}' raised {type(values).__name__}: {values} "
                                "(set reward_errors=mask to mask such samples instead)") from None
            return [None] * count, count
        if len(values) != count:
            raise UserError(f"reward function '{name}' returned {len(values)} values for {count} completions; "
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


def _task_scorers(spec: str, dataset: str) -> dict[str, Callable]:
    """The scorers `task`, `task::SCORER`, `task:NAME` or `task:NAME:SCORER` names; an empty NAME is the
    dataset's task (so a preset can name a scorer whatever the task)."""
    from posttrain.tasks import get_task
    from posttrain.tasks.sources import is_task_source, parse_task_source

    parts = spec.split(":", 2)  # "task", NAME, SCORER
    name = parts[1] if len(parts) > 1 else ""
    scorer = parts[2] if len(parts) > 2 else None
    if not name:
        if not is_task_source(dataset):
            raise ConfigError(f"reward_funcs=[{spec}] needs dataset=task:NAME; name your functions "
                              "(module:function or file.py:function) for other data")
        name = parse_task_source(dataset)[0]
    task = get_task(name)
    if scorer is None:
        return dict(task.scorers)
    if scorer not in task.scorers:
        raise ConfigError(f"task {name} has no scorer '{scorer}'; it has {', '.join(task.scorers)}")
    return {scorer: task.scorers[scorer]}


def _is_async(fn: Callable) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _capture(call: Callable):
    try:
        return call()
    except Exception as exc:  # returned, so the caller reports it with the function's name
        return exc
