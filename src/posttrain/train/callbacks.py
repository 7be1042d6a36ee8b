"""transformers' TrainerCallback hooks around the one training loop (the Python API's `callbacks=`).

The loop calls on_train_begin, then per optimizer step on_step_begin, on_step_end, on_evaluate (when it
evaluates), on_log (when it logs) and on_save (when it saves a checkpoint), and on_train_end once final/
is written. Each is called as transformers calls it, `hook(args, state, control, **kwargs)`: `state` is a real
`TrainerState` (global_step, max_steps, epoch, log_history, best_metric), `control` a `TrainerControl`,
and `args` the run's config with the TrainingArguments names a callback reads added (output_dir,
logging_steps, metric_for_best_model="eval_loss", ...). Setting `control.should_training_stop` stops the
run cleanly after that step: its metrics are logged and final/ is written. So transformers'
`EarlyStoppingCallback` works on `eval_loss` (eval_dataset and eval_steps set).

The API sets the callbacks for one stage call (`using_callbacks`); the loop finds them with `active()`,
so every stage that trains gets them without passing them through.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict
from types import SimpleNamespace

import posttrain.ranks as ranks
from posttrain.errors import UserError

_active: ContextVar["Callbacks | None"] = ContextVar("posttrain_callbacks", default=None)



@contextmanager
def using_callbacks(callbacks: list):
    """Run the block with `callbacks` (TrainerCallback instances or classes, as transformers takes them)."""
    token = _active.set(Callbacks([c() if isinstance(c, type) else c for c in callbacks]) if callbacks else None)
    try:
        yield
    finally:
        _active.reset(token)


def active() -> "Callbacks | None":
    return _active.get()


def training_args(config) -> SimpleNamespace:
    """The config's values under their own names and under the TrainingArguments names callbacks read."""
    values = asdict(config)
    return SimpleNamespace(**{
        **values, "output_dir": str(config.output_dir), "logging_steps": config.logging_steps,
        "eval_steps": config.eval_steps, "save_steps": config.save_steps, "max_steps": config.max_steps,
        "num_train_epochs": config.num_epochs, "per_device_train_batch_size": config.batch_size,
        "eval_strategy": "steps" if config.eval_steps > 0 else "no", "save_strategy": "steps" if config.save_steps > 0 else "no",
        "logging_strategy": "steps", "metric_for_best_model": "eval_loss", "greater_is_better": False,
        "load_best_model_at_end": False, "should_save": True, "report_to": [],
    })


class Callbacks:
    """The callbacks of one run, with the `state` and `control` they share."""

    def __init__(self, callbacks: list):
        self.callbacks = callbacks
        self.args = self.state = self.control = None

    def begin(self, config, total_steps: int, start: int, **kwargs) -> None:
        """on_train_begin; `kwargs` (model, processing_class, optimizer, lr_scheduler) go to every hook."""
        from transformers import TrainerControl, TrainerState

        self.args = training_args(config)
        self.state = TrainerState(max_steps=total_steps, global_step=start, logging_steps=config.logging_steps,
                                  eval_steps=config.eval_steps, save_steps=config.save_steps,
                                  is_world_process_zero=ranks.is_main(), is_local_process_zero=int(os.environ.get("LOCAL_RANK", "0")) == 0)
        self.control = TrainerControl()
        self.kwargs = {**kwargs, "tokenizer": kwargs.get("processing_class")}
        self.call("on_train_begin")

    def call(self, hook: str, **kwargs) -> None:
        """Every callback's `hook`; one that raises stops the run with one line naming it (as a reward function)."""
        for callback in self.callbacks:
            fn = getattr(callback, hook, None)
            if fn is None:
                continue
            try:
                fn(self.args, self.state, self.control, **self.kwargs, **kwargs)
            except Exception as exc:
                hint = (" (args.eval_strategy is 'steps' when eval_steps > 0, metric_for_best_model is eval_loss)"
                        if hook == "on_train_begin" else "")
                raise UserError(f"callback {type(callback).__name__}.{hook} raised {type(exc).__name__}: {exc}{hint}") from exc

    def step_end(self, step: int, epoch: float | None) -> None:
        self.state.global_step, self.state.epoch = step, epoch
        self.call("on_step_end")

    def log(self, record: dict) -> None:
        logs = {k: v for k, v in record.items() if k != "step"}
        self.state.log_history.append({**logs, "step": record["step"]})
        self.call("on_log", logs=logs)

    def evaluate(self, metrics: dict) -> None:
        """on_evaluate, then the best eval_loss so far (as Trainer keeps it, after the hook)."""
        self.call("on_evaluate", metrics=metrics)
        loss = metrics.get("eval_loss")
        if loss is not None and (self.state.best_metric is None or loss < self.state.best_metric):
            self.state.best_metric, self.state.best_global_step = loss, self.state.global_step

    @property
    def should_stop(self) -> bool:
        return bool(self.control.should_training_stop)
