"""Checkpoints: `checkpoints/step-N/`, written atomically, enough to resume a run bit for bit.

A checkpoint holds the trainable weights (`model.pt`, full unsharded tensors), the optimizer state
keyed by parameter name (`optimizer.pt`), and `trainer_state.pt`: the step, the scheduler, every
rank's RNG states, the data source's position and the logging window. Frozen weights are not
stored: they are whatever the run loads at start (so a LoRA checkpoint holds only the adapters).
Beside them the training loop adds save_pretrained output (safetensors weights, config, generation
config, tokenizer; the adapter alone under LoRA), so `model=RUN/checkpoints/step-N` and plain
`from_pretrained` load the model of that step.

Under torchrun with FSDP2 (world size N > 1) the weights and optimizer state are not gathered: each
rank writes its own shards with torch.distributed.checkpoint into `distributed/` (a `.distcp` file
per rank and the coordinator's `.metadata`), and reads back the slices its shards need on resume
(dcp reshards, so a checkpoint of N processes loads into another number). `trainer_state.pt` and the
save_pretrained files stay as above: the latter, like final/, are gathered for rank 0 to write.

Rank 0 writes everything into `checkpoints/.tmp-step-N/` and renames it to `step-N/` when done (the
other ranks' shards included: they are written first, into the same temp dir), so a run killed
mid-write leaves either a whole checkpoint or a temp dir that is ignored and removed.
A write that fails for lack of space removes its temp dir and raises a DiskFullError on every rank;
the previous checkpoints are untouched (older ones are pruned only after the new one is in place).
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

import posttrain.ranks as ranks
from posttrain.train import distributed
from posttrain.train.faults import all_ranks_write, rank0_write

STEP_DIR = re.compile(r"^step-(\d+)$")
TMP_PREFIX = ".tmp-"
SHARDED_DIR = "distributed"  # torch.distributed.checkpoint's files of a multi-process checkpoint


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(checkpoints_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first."""
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return sorted(found)


def latest_checkpoint(checkpoints_dir: str | Path) -> Path | None:
    found = list_checkpoints(checkpoints_dir)
    return found[-1][1] if found else None


def remove_partial(checkpoints_dir: str | Path) -> None:
    root = Path(checkpoints_dir)
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)


def prune(checkpoints_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints (0 keeps all)."""
    if keep_last > 0:
        for _, path in list_checkpoints(checkpoints_dir)[:-keep_last]:
            shutil.rmtree(path, ignore_errors=True)


def save_checkpoint(checkpoints_dir: str | Path, step: int, model, optimizer, trainer_state: dict, keep_last: int = 0,
                    export=None) -> Path:
    """Collective under FSDP (every rank calls it); rank 0 writes. `export(dir)`, when given, adds the
    save_pretrained files (train.loop.pretrained_writer) beside the resume state. Returns the checkpoint path."""
    sharded = ranks.world_size() > 1 and distributed.is_sharded(model)
    if not sharded:
        weights = distributed.model_state(model, trainable_only=True)
        optim = distributed.optimizer_state(model, optimizer)
    rngs = ranks.all_gather_object(rng_state())
    final = Path(checkpoints_dir) / f"step-{step}"
    tmp = Path(checkpoints_dir) / f"{TMP_PREFIX}step-{step}"
    previous = latest_checkpoint(checkpoints_dir) if ranks.is_main() else None
    kept = f"the previous checkpoint, {previous.name}, is intact" if previous is not None else "no earlier checkpoint exists"
    if sharded:  # every rank writes its shards into the temp dir, which rank 0 then completes and renames
        if ranks.is_main():
            shutil.rmtree(tmp, ignore_errors=True)
        ranks.barrier()
        all_ranks_write(lambda: distributed.save_sharded(model, optimizer, tmp / SHARDED_DIR), f"checkpoint {final.name}",
                        Path(checkpoints_dir), kept, cleanup=lambda: shutil.rmtree(tmp, ignore_errors=True))

    def write() -> None:
        if not sharded:
            shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True, exist_ok=sharded)
            if not sharded:
                _save(weights, tmp / "model.pt")
                _save(optim, tmp / "optimizer.pt")
            _save({**trainer_state, "step": step, "rng": rngs}, tmp / "trainer_state.pt")
            if export is not None:
                export(tmp)
            _fsync_dir(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # frees the space a partial checkpoint took
            raise
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        prune(checkpoints_dir, keep_last)

    rank0_write(write, f"checkpoint {final.name}", Path(checkpoints_dir), kept)
    return final


def load_checkpoint(path: str | Path, model, optimizer) -> dict:
    """Restore weights, optimizer and this rank's RNG states; returns the trainer state (with `step`)."""
    path = Path(path)
    if (path / SHARDED_DIR).is_dir():  # written by several processes (any number may read it)
        distributed.load_sharded(model, optimizer, path / SHARDED_DIR)
    else:
        weights = torch.load(path / "model.pt", map_location="cpu", weights_only=False)
        distributed.load_model_state(model, weights, strict=False)
        optim = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
        distributed.load_optimizer_state(model, optimizer, optim)
    state = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=False)
    rngs = state.pop("rng")
    if len(rngs) == ranks.world_size():
        set_rng_state(rngs[ranks.rank()])
    return state


def _save(obj, path: Path) -> None:
    """torch.save through a Python file, so a full disk raises OSError(ENOSPC) (torch's own file writer
    reports it only as "unexpected pos ...")."""
    with open(path, "wb") as f:
        torch.save(obj, f)


def _fsync_dir(path: Path) -> None:
    """Flush the files of a finished checkpoint (its shards' folder included) to disk before the rename publishes it."""
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def resume_point(config, run) -> Path | None:
    """The checkpoint a run continues from: `resume_from` (any checkpoint directory), else with
    resume=true the newest in output_dir, else None."""
    if getattr(config, "resume_from", None):
        return Path(config.resume_from)
    return latest_checkpoint(run.checkpoints) if config.resume else None
