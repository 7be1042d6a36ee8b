"""FSDP2 sharding of a model under torchrun: each transformer block, then the root (`fully_shard`).

In the models layer so that a frozen model made below the training loop (the reference policy of
DPO, KTO, GRPO, PPO: models.reference) is sharded exactly as the loop shards the policy
(train.distributed re-exports these): each process holds 1/N of its weights and gathers a block's
weights only while that block runs. A single process is the world-size-1 case: the model is moved.
"""

from __future__ import annotations

import torch

from posttrain.ranks import all_gather_object, launched_world_size, reduce_device, world_size


def _block_classes(model) -> set[str]:
    """Names of the transformer-block classes (HF's `_no_split_modules`), the unit FSDP shards by."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(getattr(base, "_no_split_modules", None) or [])


def shard_model(model, device: torch.device):
    """Move to `device`; under torchrun shard with FSDP2: each transformer block, then the root.

    `fully_shard` converts the module in place, so references held elsewhere (a rollout engine, an
    algorithm's reference to the policy) stay valid. A frozen model (no parameter requires grad) is
    sharded the same way and used forward-only: FSDP2 all-gathers a block's weights for its forward
    and frees them after.
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


def reshard(model) -> None:
    """Free the gathered weights of a sharded model that runs forward only. FSDP2 keeps the root's own
    parameters (embeddings, final norm, output head) gathered after a forward, for the backward that
    would reshard them; a frozen model has no backward, so it reshards here."""
    if is_sharded(model):
        model.reshard()


def frozen_load_device(device: str) -> torch.device:
    """Where a frozen scoring model is loaded: the CPU under torchrun (`shard_frozen` moves each process's
    1/N to its device; a full copy per process on one GPU would not fit), else the run's device."""
    from posttrain.models.loading import resolve_device

    return torch.device("cpu") if launched_world_size() > 1 else resolve_device(device)


def shard_frozen(model):
    """A frozen scoring model (a reward model, a PRM) under torchrun: sharded once, the first time it
    scores (the loop has joined the process group by then), on the device collectives use; each
    process then holds 1/N of it instead of a full copy. A single process, a model already sharded,
    or one that trains (the loop shards those) stays as it is."""
    if world_size() > 1 and not is_sharded(model) and not any(p.requires_grad for p in model.parameters()):
        shard_model(model, reduce_device())
    return model


def batch_starts(model, n: int, batch_size: int) -> list[int | None]:
    """Where each batch of `n` items starts. A sharded model's forward is collective (every process
    gathers each block's weights together), so every process runs as many forwards as the busiest
    one: its extra batches are None, to be run on a one-token dummy (`dummy_forward`)."""
    starts: list[int | None] = list(range(0, n, batch_size))
    if is_sharded(model):
        starts += [None] * (max(all_gather_object(len(starts))) - len(starts))
    return starts


def dummy_forward(model) -> None:
    """A forward whose output nobody reads: this process's share of a collective forward (`batch_starts`)."""
    device = next(model.parameters()).device
    with torch.no_grad():
        model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device),
              attention_mask=torch.ones((1, 1), dtype=torch.long, device=device))
