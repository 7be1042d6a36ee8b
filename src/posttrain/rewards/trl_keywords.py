"""The keywords TRL's GRPOTrainer passes reward functions beyond the data: `trainer_state` (a
transformers.TrainerState), `log_metric(name, value)` and `log_extra(column, values)`; a function gets
those it names, or all of them when it takes **kwargs."""

from __future__ import annotations

import inspect
from typing import Callable


TRL_KEYWORDS = ("trainer_state", "log_metric", "log_extra")


def accepted_keywords(fn: Callable, names: tuple[str, ...]) -> tuple[str, ...]:
    """Those of `names` that `fn` accepts: all with **kwargs, else the ones it names."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: pass nothing extra
        return ()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return names
    named = {p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    return tuple(n for n in names if n in named)


class LazyTrainerState:
    """A transformers.TrainerState made on first use (an attribute, or isinstance): importing it costs
    ~2 s a process (transformers.trainer_utils imports peft), and most reward functions take **kwargs
    without ever reading it."""

    def __init__(self, **fields):
        self._fields, self._state = fields, None

    def _real(self):
        if self._state is None:
            from transformers import TrainerState

            self._state = TrainerState(**self._fields)
        return self._state

    @property
    def __class__(self):  # isinstance(state, TrainerState) holds, as for TRL's own
        return type(self._real())

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._real(), name)

    def __setattr__(self, name: str, value) -> None:
        if name in ("_fields", "_state"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._real(), name, value)

    def __repr__(self) -> str:
        return repr(self._real())


def trainer_state(global_step: int, max_steps: int, epoch: float | None = None, **fields) -> LazyTrainerState:
    """What TRL passes its reward functions as `trainer_state`: a transformers.TrainerState (made on first use)."""
    return LazyTrainerState(global_step=global_step, max_steps=max_steps, epoch=epoch, **fields)
