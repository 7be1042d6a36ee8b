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

TRL's extra keywords (GRPOTrainer._calculate_rewards passes them to every function): a function that
names them or takes `**kwargs` also gets `trainer_state` (a transformers.TrainerState: `global_step` =
optimizer steps taken, `max_steps`, `epoch`; set by the online stages before each generation round,
a fresh TrainerState() elsewhere), `log_metric(name, value)` (a scalar, averaged over the round and
logged under `name` in metrics.jsonl) and `log_extra(column, values)` (one value per completion, a
column of the round's rows in OUTPUT_DIR/completions.jsonl). `pop_logged` hands both to the caller.

Monitors (`monitors`, the online stages' `monitor_funcs=`): functions called and checked exactly like
the rewards, returned in `RewardResult.monitors`, never part of the weighted sum (weight 0): a gold
reward watched beside the trained one.

Timeouts (`timeout`, the online stages' `reward_timeout=`): every call runs in its own daemon thread
(`bounded.run_bounded`) and one that has not returned `timeout` seconds after it started is abandoned.
Its values become None, as if the function did not apply (skipped by the weighted sum; a sample with
no other reward is masked), whatever `on_error` says; the call is counted (`pop_timeouts`) and
`timeout_streaks` counts each function's timed-out calls in a row, for the caller to stop on. An
`async def` function gets `asyncio.wait_for(timeout)`; the event loop's thread itself gets one more
second, after which every async function still on it counts as timed out. `declared_range` reads the
range a function declares (`reward_range`), for diagnostics that need its maximum.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from posttrain.errors import ConfigError, UserError, naming_option
from posttrain.rewards.bounded import TIMED_OUT, run_bounded
from posttrain.rewards.trl_keywords import TRL_KEYWORDS, accepted_keywords, trainer_state

ON_ERROR = ("raise", "mask")
ASYNC_LOOP_GRACE = 1.0  # seconds the async functions' event loop thread gets past the timeout
MAX_TIMEOUTS_IN_A_ROW = 3  # timed-out calls of one function in a row that stop an online run


@dataclass
class RewardResult:
    total: list[float | None]  # the weighted sum per completion; None: no usable reward (masked)
    per_function: dict[str, list[float | None]]
    failures: dict[str, int] = field(default_factory=dict)  # values turned into None, per function
    monitors: dict[str, list[float | None]] = field(default_factory=dict)  # monitor functions' values (weight 0)

    @property
    def num_masked(self) -> int:
        return sum(v is None for v in self.total)


class RewardFunctions:
    def __init__(self, functions: dict[str, Callable], weights: list[float] | None = None, on_error: str = "raise",
                 workers: int = 4, *, monitors: dict[str, Callable] | None = None, timeout: float | None = None,
                 label: str = "reward"):
        if on_error not in ON_ERROR:
            raise ConfigError(f"reward_errors must be one of {ON_ERROR}, got {on_error!r}")
        if weights is not None and len(weights) != len(functions):
            raise ConfigError(f"reward_weights has {len(weights)} entries for {len(functions)} reward functions "
                              f"({', '.join(functions)}); give one weight per function")
        if workers < 1:
            raise ConfigError(f"reward_workers must be >= 1, got {workers}")
        if timeout is not None and not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
                                        and math.isfinite(timeout) and timeout >= 0):
            raise ConfigError(f"reward_timeout must be a number of seconds >= 0 (0: no limit), got {timeout!r}")
        self.functions, self.on_error, self.workers = dict(functions), on_error, workers
        self.monitors = dict(monitors or {})
        self.weights = list(weights) if weights is not None else [1.0] * len(functions)
        self.timeout = float(timeout) if timeout else None
        self.trainer_state = None  # set by the online stages before each round; a fresh TrainerState when None
        self._logged: tuple[dict[str, list[float]], dict[str, list]] = ({}, {})  # log_metric's and log_extra's values
        self.label = label  # what errors call the functions: "reward", or "scoring" for eval (no reward_errors there)
        self.timeout_streaks: dict[tuple[str, str], int] = {}  # ("reward" | "monitor", name) -> timed-out calls in a row
        self._timeouts: dict[tuple[str, str], int] = {}  # timed-out calls since the last pop_timeouts
        for kind, name, fn in self._entries():
            declared_range(fn, f"{kind} function '{name}'")  # a malformed declaration fails at the start

    @classmethod
    def from_options(cls, options, dataset: str):
        """`resolve` with a config's reward options (options.RewardOptions: reward_funcs, reward_weights,
        reward_workers, and reward_errors where the stage has it, else raise)."""
        if not options.reward_funcs and getattr(options, "environment", None):  # the environment's rewards alone
            return cls({}, None, getattr(options, "reward_errors", "raise"), options.reward_workers,
                       monitors=monitor_functions(options, dataset), timeout=getattr(options, "reward_timeout", None))
        return cls.resolve(options.reward_funcs, dataset, options.reward_weights, getattr(options, "reward_errors", "raise"),
                           options.reward_workers, monitors=monitor_functions(options, dataset),
                           timeout=getattr(options, "reward_timeout", None))

    @classmethod
    def resolve(cls, specs: list[str], dataset: str, weights: list[float] | None = None, on_error: str = "raise",
                workers: int = 4, *, monitors: dict[str, Callable] | None = None, timeout: float | None = None):
        """`task` (the dataset's embedded task's scorers, e.g. accuracy + format), `task::SCORER` (one
        scorer of the dataset's task), `task:NAME`, `task:NAME:SCORER`, a built-in `NAME[:key=value...]`
        (see `registry`), `module:function` or `path/file.py:function`."""
        return cls(resolve_specs(specs, dataset, "reward_funcs"), weights, on_error, workers, monitors=monitors,
                   timeout=timeout)

    def __call__(self, prompts: list, completions: list, columns: dict[str, list],
                 completion_ids: list[list[int]] | None = None) -> RewardResult:
        kwargs = dict(columns, prompts=prompts, completions=completions)
        if completion_ids is not None:
            kwargs["completion_ids"] = completion_ids
        raw = self._call_all(kwargs)
        values: dict[tuple[str, str], list[float | None]] = {}
        failures = {}
        for key in raw:
            if raw[key] is TIMED_OUT:  # as if the function did not apply; counted, and a streak stops the run
                values[key] = [None] * len(completions)
                self._timeouts[key] = self._timeouts.get(key, 0) + 1
                self.timeout_streaks[key] = self.timeout_streaks.get(key, 0) + 1
                continue
            self.timeout_streaks[key] = 0
            kind = self.label if key[0] == "reward" else key[0]
            values[key], failed = self._check(f"{kind} function '{key[1]}'", raw[key], len(completions))
            if failed and key[0] == "reward":
                failures[key[1]] = failed
        per_function = {name: values["reward", name] for name in self.functions}
        total: list[float | None] = []
        for i in range(len(completions)):
            parts = [w * per_function[name][i] for name, w in zip(self.functions, self.weights) if per_function[name][i] is not None]
            total.append(sum(parts) if parts else None)
        return RewardResult(total, per_function, failures, {name: values["monitor", name] for name in self.monitors})

    def log_metric(self, name: str, value: float) -> None:
        """TRL's `log_metric` keyword: a scalar for the round's metrics record (averaged over the round)."""
        self._logged[0].setdefault(name, []).append(float(value))

    def log_extra(self, column: str, values: list) -> None:
        """TRL's `log_extra` keyword: one value per completion of the call, a column of the round's rows."""
        self._logged[1].setdefault(column, []).extend(values)

    def pop_logged(self) -> tuple[dict[str, list[float]], dict[str, list]]:
        """What the functions logged since the last pop: ({name: values}, {column: values})."""
        out, self._logged = self._logged, ({}, {})
        return out

    def _trl_keywords(self, fn: Callable) -> dict:
        """The TRL keywords `fn` accepts (by name, or all of them with **kwargs)."""
        wanted = accepted_keywords(fn, TRL_KEYWORDS)
        if not wanted:
            return {}
        if "trainer_state" in wanted and self.trainer_state is None:
            self.trainer_state = trainer_state(0, 0)
        values = {"trainer_state": self.trainer_state, "log_metric": self.log_metric, "log_extra": self.log_extra}
        return {key: values[key] for key in wanted}

    def for_evaluation(self, fn: Callable) -> Callable:
        """`fn` with the TRL keywords it accepts bound, for a held-out scoring call outside `__call__`:
        the latest round's trainer_state; what it logs there is dropped."""
        wanted = accepted_keywords(fn, TRL_KEYWORDS)
        if not wanted:
            return fn
        values = {"trainer_state": self.trainer_state or trainer_state(0, 0),
                  "log_metric": lambda name, value: None, "log_extra": lambda column, values: None}
        return functools.partial(fn, **{key: values[key] for key in wanted})

    def pop_timeouts(self) -> dict[tuple[str, str], int]:
        """Timed-out calls per ("reward" | "monitor", name) since the last pop (every function, 0s included)."""
        out = {(kind, name): self._timeouts.get((kind, name), 0) for kind, name, _ in self._entries()}
        self._timeouts = {}
        return out

    def total_range(self) -> tuple[float, float] | None:
        """The range of the weighted sum when every reward function declares one: Σ min(w·lo, w·hi) ..
        Σ max(w·lo, w·hi) (None: some function has no declared range, or the range is a point)."""
        low = high = 0.0
        for (name, fn), w in zip(self.functions.items(), self.weights):
            declared = declared_range(fn, f"reward function '{name}'")
            if declared is None:
                return None
            low, high = low + min(w * declared[0], w * declared[1]), high + max(w * declared[0], w * declared[1])
        return (low, high) if high > low else None

    def _entries(self) -> list[tuple[str, str, Callable]]:
        return [("reward", n, f) for n, f in self.functions.items()] + [("monitor", n, f) for n, f in self.monitors.items()]

    def _call_all(self, kwargs: dict) -> dict[tuple[str, str], list | BaseException | object]:
        """Each function's raw output (or the exception it raised, or TIMED_OUT), sync ones in a bounded
        pool, keyed by ("reward" | "monitor", name)."""
        entries = self._entries()
        async_keys = [(kind, name) for kind, name, fn in entries if _is_async(fn)]
        fns = {(kind, name): fn for kind, name, fn in entries}
        sync_keys = [key for key in fns if key not in async_keys]
        each = {key: kwargs | self._trl_keywords(fn) for key, fn in fns.items()}
        jobs = {key: (lambda key=key: _capture(lambda: list(fns[key](**each[key])))) for key in sync_keys}
        if async_keys:
            jobs[("async",)] = lambda: asyncio.run(self._gather([(fns[k], each[k]) for k in async_keys]))
        if self.timeout is not None:
            seconds = {key: self.timeout + (ASYNC_LOOP_GRACE if key == ("async",) else 0.0) for key in jobs}
            done = run_bounded({key: (job, seconds[key]) for key, job in jobs.items()}, self.workers)
        elif len(jobs) == 1 or self.workers == 1:
            done = {key: job() for key, job in jobs.items()}
        else:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs))) as pool:
                futures = {key: pool.submit(job) for key, job in jobs.items()}
                done = {key: future.result() for key, future in futures.items()}
        raw = {key: done[key] for key in sync_keys}
        if async_keys:
            loop = done[("async",)]
            raw.update(zip(async_keys, [TIMED_OUT] * len(async_keys) if loop is TIMED_OUT else loop))
        return {key: raw[key] for key in fns}

    async def _gather(self, calls: list[tuple[Callable, dict]]) -> list:
        async def one(fn, kwargs):
            try:
                if self.timeout is None:
                    return list(await fn(**kwargs))
                return list(await asyncio.wait_for(fn(**kwargs), self.timeout))
            except asyncio.TimeoutError:
                return TIMED_OUT
            except Exception as exc:  # reported by _check, by name
                return exc
        return await asyncio.gather(*(one(fn, kwargs) for fn, kwargs in calls))

    @property
    def _mask_hint(self) -> str:
        return " (set reward_errors=mask to mask such samples instead)" if self.label == "reward" else ""

    def _check(self, what: str, values, count: int) -> tuple[list[float | None], int]:
        """`what`: "reward function 'NAME'" (or monitor), as the errors name it."""
        if isinstance(values, BaseException):  # user code raised: one line naming it
            if self.on_error == "raise":
                raise UserError(f"{what} raised {type(values).__name__}: {values}{self._mask_hint}") from None
            return [None] * count, count
        if len(values) != count:
            raise UserError(f"{what} returned {len(values)} values for {count} completions; "
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
                    raise UserError(f"{what} returned {value!r} for completion {i}; values must be "
                                    f"finite numbers or None{self._mask_hint}")
                out.append(None)
                failed += 1
            else:
                out.append(number)
        return out, failed


def resolve_specs(specs: list[str], dataset: str, option: str = "reward_funcs") -> dict[str, Callable]:
    """Name -> function for reward specs (see `RewardFunctions.resolve`); `option` names the key in errors.
    An empty list is an error for reward_funcs, and no functions for monitor_funcs."""
    from posttrain.callables import load_callable
    from posttrain.rewards import registry

    functions: dict[str, Callable] = {}

    def add(name: str, fn: Callable) -> None:  # a name taken already gets its position in the list: format, format_2
        functions[name if name not in functions else f"{name}_{len(functions)}"] = fn

    for spec in specs:
        if spec == "task" or spec.startswith("task:"):
            for name, fn in _task_scorers(spec, dataset).items():
                add(name, fn)
        elif registry.is_builtin(spec):
            add(*registry.build(spec))
        elif ":" not in spec and "." in spec and not spec.endswith(".py"):  # TRL's `module.function` (scripts/grpo.py)
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # as TRL does: a module beside the YAML file imports
            module, name = spec.rsplit(".", 1)
            add(name, load_callable(f"{module}:{name}"))
        elif ":" not in spec:
            raise ConfigError(f"unknown reward '{spec}' in {option}; give a built-in "
                              f"({', '.join(sorted(registry.BUILTIN))}), task, task:NAME, module:function or file.py:function")
        else:
            add(spec.rsplit(":", 1)[-1], load_callable(spec))
    if not functions and option == "reward_funcs":
        raise ConfigError("reward_funcs is empty; give at least one reward function (or an environment whose rewards train alone)")
    return functions


def monitor_functions(options, dataset: str) -> dict[str, Callable]:
    """The functions a config's `monitor_funcs` names (none when it has no such option); errors name the option."""
    with naming_option("monitor_funcs"):
        return resolve_specs(getattr(options, "monitor_funcs", None) or [], dataset, "monitor_funcs")


def declared_range(fn: Callable, what: str = "reward function") -> tuple[float, float] | None:
    """The (low, high) a reward function declares as its `reward_range` attribute (set it on your own
    function: `f.reward_range = (0, 1)`); None when it declares none. A ConfigError when malformed."""
    declared = getattr(fn, "reward_range", None)
    if declared is None:
        return None
    try:
        low, high = (float(v) for v in declared)
    except (TypeError, ValueError):
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"{what}: reward_range must be two finite numbers (low, high) with low < high, got {declared!r}")
    return low, high


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
