"""The one training loop. Every algorithm (SFT, reward models, DPO, KTO, PPO, GRPO) runs through `train`.

The loop owns what every algorithm shares: the model's preparation (LoRA, gradient checkpointing,
FSDP2), AdamW, the learning-rate schedule, gradient accumulation, clipping, mixed precision,
evaluation, logging, checkpoints and resume. An algorithm supplies two small things:

- an `Algorithm`: how a micro-batch becomes a loss (`loss`), how much that micro-batch counts
  (`batch_weight`: completion tokens for SFT, pairs for DPO), and for offline data `collate`;
- a `StepSource`: the micro-batches of each optimizer step. `OfflineSource` walks a dataset in a
  seeded order; an online algorithm plugs in an experience maker (rollout -> reward -> advantages)
  that returns the micro-batches of its next step.

The gradient of a step is that of  sum(loss over micro-batches and ranks) / sum(batch_weight over
micro-batches and ranks): `loss` returns a *sum*, never a mean, so accumulation over micro-batches
and processes gives exactly the large-batch result (seed 000 eq. 19 for SFT).
"""

from __future__ import annotations

import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

import posttrain.ranks as ranks
from posttrain.data.collate import to_device
from posttrain.data.steps import Algorithm, OfflineSource, StepSource  # noqa: F401  (Algorithm: re-exported for the stages)
from posttrain.errors import DataError, Interrupted
from posttrain.models.hardware import is_quantized, prepare_quantized
from posttrain.models.loading import apply_lora, is_peft, save_model
from posttrain.train import callbacks, distributed
from posttrain.train.checkpoint import latest_checkpoint, load_checkpoint, remove_partial, resume_point, save_checkpoint
from posttrain.train.faults import NonFiniteSteps, StopSignals, rank0_write
from posttrain.train.precision import Precision
from posttrain.train.metrics import MetricsWindow, MetricsWriter, carry_metrics, truncate_metrics
from posttrain.train.rundir import atomic_dir, check_run_dir, prepare_run_dir
from posttrain.train.scaffold import load_model_for
from posttrain.train.schedule import build_scheduler
from posttrain.train.trackers import start_trackers

STOP_ENV = "POSTTRAIN_STOP_AFTER_STEP"  # tests: kill the process (SIGKILL) right after this step
STOP_SIGNAL_ENV = "POSTTRAIN_STOP_SIGNAL"  # tests: ... or send it this signal instead (TERM, INT)


def eval_batches(items: list, collate, batch_size: int) -> list[dict[str, Any]]:
    """This rank's eval micro-batches: every rank gets the same number of them (FSDP needs that),
    none empty, about batch_size items each; together they cover every item once."""
    world, r = ranks.world_size(), ranks.rank()
    if not items:
        return []
    if len(items) < world:
        raise DataError(f"the eval data has {len(items)} rows, fewer than the {world} processes")
    mine = items[r::world]
    count = min(math.ceil(math.ceil(len(items) / world) / batch_size), len(items) // world)
    return [collate([mine[i] for i in idx]) for idx in np.array_split(np.arange(len(mine)), count)]


# ------------------------------------------------------------------------------------- building


def prepare_model(model, config):
    """Gradient checkpointing and LoRA, as the config asks (a model loaded from an adapter directory keeps
    training that adapter; a quantized one gets peft's k-bit preparation first, QLoRA). (The config is left
    alone, so final/ keeps use_cache=true: training forwards pass `use_cache=False` themselves.)"""
    if is_quantized(model):
        model = prepare_quantized(model, config.gradient_checkpointing)
    elif config.gradient_checkpointing:
        enable_checkpointing(model)
    if config.lora and not is_peft(model):
        model = apply_lora(model, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules)
    return model


def enable_checkpointing(model) -> None:
    """Activation (gradient) checkpointing, non-reentrant: transformers 5.x's name, or 4.x's (deprecated in 5.x)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def build_optimizer(model, config, own: tuple[tuple[str, ...], float] | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases and norm weights (1-D). With `own`
    (module names, learning rate), those modules' parameters get that learning rate and, in `train_step`,
    a gradient-norm clip of their own (`clip` of a group): an optimizer of their own in all but name, as
    AdamW keeps its moments per parameter."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = []
    for owned, lr in ((False, config.learning_rate), (True, own[1] if own else None)):
        chosen = [p for n, p in params if (own is not None and any(part in own[0] for part in n.split("."))) == owned]
        groups += [{"params": [p for p in chosen if p.ndim >= 2], "weight_decay": config.weight_decay, "lr": lr, "clip": int(owned)},
                   {"params": [p for p in chosen if p.ndim < 2], "weight_decay": 0.0, "lr": lr, "clip": int(owned)}]
    groups = [g for g in groups if g["params"]]
    kw = dict(lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon)
    # fused AdamW: one kernel for all parameters (CPU and CUDA); not for FSDP2's DTensors on CPU.
    fused = not (distributed.is_sharded(model) and params[0][1].device.type == "cpu")
    return torch.optim.AdamW(groups, fused=fused, foreach=None if fused else True, **kw)


def _add_metrics(sums: dict, metrics: dict) -> None:
    for k, v in metrics.items():
        num, den = v if isinstance(v, tuple) else (v, None)
        num = float(num.detach()) if isinstance(num, torch.Tensor) else float(num)
        den = None if den is None else float(den.detach() if isinstance(den, torch.Tensor) else den)
        old = sums.get(k, (0.0, None if den is None else 0.0))
        sums[k] = (old[0] + num, None if den is None else old[1] + den)


def _reduce(loss_sum: float, weight: float, tokens: float, sums: dict) -> tuple[dict, float]:
    """All-reduce a step's (or an eval pass's) sums; returns (means, total tokens). Every rank reduces
    the union of the ranks' metric names: a metric one rank did not log (PPO's explained variance is
    left out where it is undefined) counts as (0, 0) there, instead of a mismatched all-reduce."""
    by_weight = {k: sums[k][1] is None for k in sums}  # metric -> divided by the step's weight
    for names in ranks.all_gather_object(by_weight) if ranks.world_size() > 1 else []:
        for k, flag in names.items():
            by_weight.setdefault(k, flag)
    keys = sorted(by_weight)
    sums = {k: sums.get(k, (0.0, None if by_weight[k] else 0.0)) for k in keys}
    flat = [loss_sum, weight, tokens] + [x for k in keys for x in (sums[k][0], sums[k][1] or 0.0)]
    flat = ranks.all_reduce_sum(flat)
    loss_sum, weight, tokens = flat[:3]
    out = {"loss": loss_sum / weight if weight > 0 else 0.0}
    for i, k in enumerate(keys):
        num, den = flat[3 + 2 * i], (flat[4 + 2 * i] if not by_weight[k] else weight)
        out[k] = num / den if den > 0 else 0.0
    return out, tokens


# ---------------------------------------------------------------------------------------- steps


def train_step(model, algorithm: Algorithm, batches: list[dict], optimizer, scheduler, precision: Precision, config, device) -> tuple[dict, float, bool]:
    """One optimizer step over this rank's micro-batches; returns (metrics, tokens on all ranks, whether
    it updated the weights). A step whose loss (summed over all ranks, so every rank sees the same) or
    global gradient norm is not finite changes nothing: no optimizer step, and the learning-rate
    schedule, which counts updates, does not advance either."""
    local_weight = sum(float(algorithm.batch_weight(b)) for b in batches)
    weight = ranks.all_reduce_sum([local_weight])[0]
    tokens = sum(algorithm.num_tokens(b) for b in batches)
    # FSDP averages gradients over ranks; the world size turns that average back into the global sum.
    scale = ranks.world_size() / weight if weight > 0 else 0.0
    loss_sum, sums = torch.zeros((), device=device), {}
    for i, batch in enumerate(batches):
        distributed.set_grad_sync(model, i == len(batches) - 1)
        with precision.autocast():
            loss, metrics = algorithm.loss(model, to_device(batch, device, non_blocking=True))
        precision.backward(loss * scale)
        loss_sum += loss.detach().float()
        _add_metrics(sums, metrics)
    out, tokens = _reduce(float(loss_sum), local_weight, tokens, sums)  # a NaN on any rank is a NaN sum on all
    lr = scheduler.get_last_lr()[0]
    params, own = ([p for g in optimizer.param_groups if g.get("clip", 0) == k for p in g["params"]] for k in (0, 1))
    grad_norm, stepped = precision.step(optimizer, params, config.max_grad_norm, loss_is_finite=math.isfinite(out["loss"]), own_params=own)
    if stepped:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if own:  # the modules with an optimizer of their own (a separate critic)
        out["grad_norm/own"] = precision.own_norm
    return {**out, "grad_norm": grad_norm, "lr": lr}, tokens, stepped


@torch.no_grad()
def evaluate(model, algorithm: Algorithm, batches: list[dict], precision: Precision, device) -> dict:
    """Weighted mean loss (and metrics) over the whole eval set, across ranks: `eval_loss`, `eval_*`."""
    model.eval()
    loss_sum, weight, sums = 0.0, 0.0, {}
    for batch in batches:
        weight += float(algorithm.batch_weight(batch))
        with precision.autocast():
            loss, metrics = algorithm.loss(model, to_device(batch, device, non_blocking=True))
        loss_sum += float(loss)
        _add_metrics(sums, metrics)
    model.train()
    out, _ = _reduce(loss_sum, weight, 0.0, sums)
    return {f"eval_{k}": v for k, v in out.items()}


def _total_steps(config, source: StepSource) -> int:
    if config.max_steps > 0:
        return config.max_steps
    return max(1, math.ceil(config.num_epochs * source.steps_per_epoch))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


# ----------------------------------------------------------------------------------------- train


def train(config, *, build_model, tokenizer, algorithm: Algorithm, source: StepSource, eval_items: list | None = None) -> dict:
    """Run an algorithm to the end; returns the last logged metrics. `build_model()` returns the
    causal LM on the CPU (the loop prepares, shards and, under FSDP, rebuilds it to export final/)."""
    info = distributed.setup(config.device)
    run = check_run_dir(config)
    if not sys.stderr.isatty():
        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bars in log files
    total_steps = _total_steps(config, source)
    _seed_everything(config.seed)
    model = prepare_model(build_model(), config)
    algorithm.setup(model)
    model = distributed.shard_model(model, info.device)
    optimizer = build_optimizer(model, config, algorithm.own_optimizer())
    scheduler = build_scheduler(optimizer, total_steps, config.lr_scheduler, config.warmup_steps, config.warmup_ratio)
    precision = Precision(config.mixed_precision, info.device)
    evals = eval_batches(eval_items or [], algorithm.collate, config.batch_size)

    prepare_run_dir(run, config, ranks.is_main())
    ranks.barrier()
    state, ckpt = {}, resume_point(config, run)
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, optimizer)
        scheduler.load_state_dict(state["scheduler"])
        source.load_state_dict(state["source"])
        algorithm.load_state_dict(state.get("algorithm", {}))
        if precision.scaler and state.get("scaler"):
            precision.scaler.load_state_dict(state["scaler"])
    else:
        _seed_everything(config.seed + info.rank)  # different dropout masks on different ranks
    start = state.get("step", 0)
    if ranks.is_main():
        remove_partial(run.checkpoints)
        carry_metrics(ckpt, run, start)
        truncate_metrics(Path(run.metrics).with_name("completions.jsonl"), start)  # reward functions' log_extra rows (online)
    ranks.barrier()

    trackers = start_trackers(config, run.root, start) if ranks.is_main() else None  # report_to
    writer = MetricsWriter(run.metrics, total_steps, start, enabled=ranks.is_main(), trackers=trackers)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    writer.message(
        f"posttrain: {'resuming at step ' + str(start) + ' of' if start else 'training'} {total_steps} steps, "
        f"{trainable:,} trainable parameters, {info.world_size} process(es) on {info.device.type} -> {run.root}"
    )
    window, num_tokens, last = MetricsWindow(state.get("window")), state.get("num_tokens", 0.0), {}
    nonfinite = NonFiniteSteps(config.max_nonfinite_steps, state.get("nonfinite"))
    stop_after = int(os.environ.get(STOP_ENV, "0") or 0)
    hooks = callbacks.active()  # TrainerCallbacks given to the Python API
    if hooks:
        hooks.begin(config, total_steps, start, model=model, processing_class=tokenizer, optimizer=optimizer, lr_scheduler=scheduler)

    def save(step: int) -> Path:
        trainer_state = {"scheduler": scheduler.state_dict(), "source": source.state_dict(),
                         "algorithm": algorithm.state_dict(), "window": window.state_dict(),
                         "num_tokens": num_tokens, "nonfinite": nonfinite.state_dict(),
                         "scaler": precision.scaler.state_dict() if precision.scaler else None}
        export = pretrained_writer(model, tokenizer, config, build_model, merge_lora=False)
        return save_checkpoint(run.checkpoints, step, model, optimizer, trainer_state, config.keep_last, export)

    if config.eval_on_start and start == 0:  # the starting point of the eval_ curves, at step 0
        first = (evaluate(model, algorithm, evals, precision, info.device) if evals else {}) | algorithm.evaluate_by_generation(model)
        if first:
            writer.log({"step": 0, **first})
    model.train()
    with StopSignals() as signals:
        for step in range(start + 1, total_steps + 1):
            began = time.perf_counter()
            if hooks:
                hooks.call("on_step_begin")
            metrics, tokens, stepped = train_step(model, algorithm, source.next_step(step - 1), optimizer, scheduler, precision, config, info.device)
            num_tokens += tokens
            algorithm_log = algorithm.after_step(model, step, metrics)
            nonfinite.update(stepped)
            # a skipped step adds its flag (and the source's numbers) to the window, not its NaN loss
            window.add({**(metrics if stepped else {}), "nonfinite": float(not stepped), **source.metrics()}, tokens, time.perf_counter() - began)
            if not stepped:
                writer.warn(nonfinite.warning(step, metrics))

            def window_record() -> dict:
                out = {**window.pop(), "lr": metrics["lr"], "num_tokens": int(num_tokens), "nonfinite_steps": nonfinite.total, **algorithm_log}
                if source.steps_per_epoch:
                    out["epoch"] = step / source.steps_per_epoch
                return out

            if hooks:
                hooks.step_end(step, step / source.steps_per_epoch if source.steps_per_epoch else None)
            last_step = step == total_steps or bool(hooks and hooks.should_stop)  # a callback may end the run here
            record = window_record() if _due(step, config.logging_steps) or last_step or nonfinite.exhausted else {}
            windowed = bool(record)
            if nonfinite.exhausted:  # no eval, no checkpoint: the last checkpoint stays the last good one
                writer.log({"step": step, **record})
                writer.close()
                raise nonfinite.error(step, total_steps, metrics, latest_checkpoint(run.checkpoints))
            if _due(step, config.eval_steps) or last_step:
                if evals:
                    scores = evaluate(model, algorithm, evals, precision, info.device)
                    record.update(scores)
                    if hooks:
                        hooks.evaluate(scores)
                record.update(algorithm.evaluate_by_generation(model))
                if hooks and hooks.should_stop and not last_step:  # on_evaluate ended the run: log this step whole
                    last_step, record = True, {**(window_record() if not windowed else {}), **record}
            if record:
                last = {"step": step, **record}
                writer.log(last)
                if trackers:
                    writer.log_table("completions", step, source.completions())
                if hooks:
                    hooks.log(last)
            writer.advance(step)
            saved = None
            if _due(step, config.save_steps) or (config.save_steps > 0 and last_step):
                saved = save(step)
                if hooks:
                    hooks.call("on_save")
            if hooks and hooks.should_stop:
                writer.message(f"posttrain: a callback stopped the run after step {step} of {total_steps}")
                break
            if step == stop_after:
                os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get(STOP_SIGNAL_ENV, "KILL")))
            signum = signals.requested() if step < total_steps else 0
            if signum:
                saved = saved or save(step)
                writer.close()
                raise Interrupted(f"stopped by {signal.Signals(signum).name} after step {step} of {total_steps}; "
                                  f"saved {saved}: run the same command with resume=true to continue", signum)
    latest = latest_checkpoint(run.checkpoints) if ranks.is_main() else None
    kept = (f"{latest} holds the trained weights, so resume=true only writes final/" if latest is not None and latest.name == f"step-{total_steps}"
            else "no checkpoint holds the trained weights (save_steps), so resume=true trains again")
    save_final(model, tokenizer, run.final, config, build_model, kept)
    writer.message(f"posttrain: done; model saved to {run.final}")
    writer.close()
    if hooks:
        hooks.call("on_train_end")
    return last


def train_offline(config, *, tokenizer, algorithm: Algorithm, items: list | StepSource, eval_items: list, what: str) -> dict:
    """`train` over a fixed data set (seeded `OfflineSource` order) or a StepSource of its own (a stream),
    starting from `config.model`; the process group is left on the way out, whatever happens."""
    source = items if isinstance(items, StepSource) else OfflineSource(items, algorithm.collate, config.batch_size, config.gradient_accumulation_steps, config.seed, what=what)
    try:
        return train(config, build_model=lambda: load_model_for(config, device="cpu"),
                     tokenizer=tokenizer, algorithm=algorithm, source=source, eval_items=eval_items)
    finally:
        distributed.cleanup()


def save_final(model, tokenizer, out_dir, config, build_model, kept: str = "no checkpoint holds the trained weights") -> None:
    """`final/`: save_pretrained output (LoRA merged unless merge_lora=false), written atomically.
    A full disk is a DiskFullError on every rank (`kept` says what the run still has)."""
    export = pretrained_writer(model, tokenizer, config, build_model, config.merge_lora)

    def write() -> None:
        with atomic_dir(out_dir) as tmp:
            export(tmp)

    rank0_write(write, "final/", Path(out_dir).parent, kept)


def pretrained_writer(model, tokenizer, config, build_model, merge_lora: bool):
    """A function that writes save_pretrained output of `model` (weights, config, generation config,
    tokenizer; the adapter alone under LoRA unless `merge_lora`) into a directory: final/ and each
    checkpoints/step-N/. Collective under FSDP: the full weights are gathered and rank 0 loads them into
    a fresh CPU copy, whose writer is the one that works (other ranks get one that is never called)."""
    if distributed.is_sharded(model):
        weights = distributed.model_state(model)
        if ranks.is_main():
            model = prepare_model(build_model(), config)
            model.load_state_dict(weights)
    return lambda out_dir: save_model(model, tokenizer, out_dir, merge_lora=merge_lora)
