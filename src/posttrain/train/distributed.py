"""Rank-aware helpers: process-group setup from torchrun's environment, FSDP2 wrapping, reductions.

A single process is the world-size-1 case of the same code: every helper works (and costs nothing)
without `torch.distributed` initialised. Under `torchrun --nproc-per-node N` the backend is NCCL on
GPUs and gloo on CPU; models are sharded with FSDP2 (`fully_shard`), which works on both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from posttrain.models.loading import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


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


def cleanup() -> None:
    """Leave the process group together: a rank that tears gloo down while its peer still has a
    collective in flight can abort the peer at exit ("terminate called without an active exception")."""
    if is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def reduce_device() -> torch.device:
    """The device collectives run on: the current GPU under NCCL, the CPU under gloo."""
    if is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a list of numbers over all ranks (in float64, so token counts stay exact)."""
    if not is_initialized():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_gather_object(obj) -> list:
    if not is_initialized():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def shard_items(items: list, world: int | None = None, r: int | None = None) -> list:
    """This rank's contiguous share of `items` (whose length is a multiple of the world size)."""
    world = world_size() if world is None else world
    r = rank() if r is None else r
    per = len(items) // world
    return items[r * per:(r + 1) * per]


# ----------------------------------------------------------------------------------------- FSDP2


def _block_classes(model) -> set[str]:
    """Names of the transformer-block classes (HF's `_no_split_modules`), the unit FSDP shards by."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(getattr(base, "_no_split_modules", None) or [])


def shard_model(model, device: torch.device):
    """Move to `device`; under torchrun shard with FSDP2: each transformer block, then the root.

    `fully_shard` converts the module in place, so references held elsewhere (a rollout engine, an
    algorithm's reference to the policy) stay valid.
    """
    model.to(device)
    if world_size() == 1:
        return model
    from torch.distributed.fsdp import fully_shard

    blocks = _block_classes(model)
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module)
    fully_shard(model)
    return model


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def set_grad_sync(model, enabled: bool) -> None:
    """Under FSDP2, skip the gradient reduce-scatter on all but the last micro-batch of a step."""
    if is_sharded(model):
        model.set_requires_gradient_sync(enabled)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (e.g. the grad norm under FSDP2); a plain tensor as is."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


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
