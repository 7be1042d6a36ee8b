"""Rank and world helpers: who this process is, and reductions over all processes.

The bottom layer, so every layer (rollout, rewards, online, train) can take a statistic over all ranks.
A single process is the world-size-1 case of the same code: every helper works (and costs nothing)
without `torch.distributed` initialised.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def launched_world_size() -> int:
    """The processes torchrun started (WORLD_SIZE; 1 without it): known to a config check, before any
    process group is joined."""
    return int(os.environ.get("WORLD_SIZE", "1"))


RAY_LEARNER_ENV = "POSTTRAIN_RAY_LEARNER"  # set in a learner that Ray started (ray_learners; train/ray_launch.py)


def in_ray_learner() -> bool:
    """Whether this process is one of a Ray-placed learner group (its torchrun variables came from Ray)."""
    return os.environ.get(RAY_LEARNER_ENV) == "1"


def is_main() -> bool:
    return rank() == 0


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


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (e.g. the grad norm under FSDP2); a plain tensor as is."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def batch_reduce():
    """`all_reduce_sum` when several processes share a batch, else None: a batch statistic taken
    with it covers every process's share, and a single process keeps its own arithmetic exactly."""
    return all_reduce_sum if world_size() > 1 else None
