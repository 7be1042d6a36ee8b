"""Process-group setup from torchrun's environment, FSDP2 wrapping, and full state dicts.

A single process is the world-size-1 case of the same code (rank and reduction helpers are in
`posttrain.ranks`). Under `torchrun --nproc-per-node N` the backend is NCCL on
GPUs and gloo on CPU; models are sharded with FSDP2 (`fully_shard`), which works on both.
"""

from __future__ import annotations

import contextlib

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from posttrain.models.loading import resolve_device
from posttrain.models.sharding import is_sharded, shard_model  # noqa: F401  (the loop's FSDP2 wrapping, shared with models.reference)
from posttrain.ranks import is_initialized, rank, world_size


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def setup(device: str = "auto") -> DistInfo:
    """Join the process group that torchrun describes (WORLD_SIZE > 1), once; pick this rank's device."""
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda" and env_world > 1:
        dev = torch.device("cuda", local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if env_world > 1 and not is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None)
    return DistInfo(rank(), world_size(), local_rank, dev)


@contextlib.contextmanager
def joined_for_loading(device: str = "auto"):
    """Join the process group before the data is read (rank 0 tokenizes, the others read its cache:
    data/mapping.py); leave it again if reading fails, so no peer waits at a barrier forever."""
    setup(device)
    try:
        yield
    except BaseException:
        cleanup()
        raise


def cleanup() -> None:
    """Leave the process group together: a rank that tears gloo down while its peer still has a
    collective in flight can abort the peer at exit ("terminate called without an active exception").
    Only the group `setup` joined (torchrun's): a colocated vLLM engine tears down the one it made itself."""
    if is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.barrier()
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------------- FSDP2


def set_grad_sync(model, enabled: bool) -> None:
    """Under FSDP2, skip the gradient reduce-scatter on all but the last micro-batch of a step."""
    if is_sharded(model):
        model.set_requires_gradient_sync(enabled)


# ------------------------------------------------------------------------------------ state dicts


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(**kw)


def model_state(model, trainable_only: bool = False) -> dict:
    """The full (unsharded) state dict, on CPU. Collective under FSDP: every rank must call it;
    rank 0 gets the tensors (other ranks may get an empty dict)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options(full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only))


def load_model_state(model, state: dict, strict: bool = True) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, state, options=_options(full_state_dict=True, strict=strict))


def optimizer_state(model, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model, optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=_options(full_state_dict=True))


# ------------------------------------------------------------------------- sharded checkpoints


def save_sharded(model, optimizer, path) -> None:
    """Collective (dcp.save): each rank writes its own shards of the trainable weights and of the
    optimizer state into the directory `path` (a file per rank, plus the coordinator's `.metadata`);
    no rank ever holds the full state. The ranks must see one file system (one machine, or a shared one)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    weights, optim = get_state_dict(model, optimizer, options=_options(ignore_frozen_params=True))
    dcp.save({"model": weights, "optimizer": optim}, checkpoint_id=path)


def load_sharded(model, optimizer, path) -> None:
    """Collective (dcp.load): each rank reads the slices of `path` its shards need (any world size:
    dcp reshards); frozen weights stay as loaded at start."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    weights, optim = get_state_dict(model, optimizer, options=_options(ignore_frozen_params=True))
    state = {"model": weights, "optimizer": optim}
    dcp.load(state, checkpoint_id=path)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                   options=_options(ignore_frozen_params=True, strict=False))
