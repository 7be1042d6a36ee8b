"""FSDP2 sharding of a model under torchrun: each transformer block, then the root (`fully_shard`).

In the models layer so that a frozen model made below the training loop (the reference policy of
DPO, KTO, GRPO, PPO: models.reference) is sharded exactly as the loop shards the policy
(train.distributed re-exports these): each process holds 1/N of its weights and gathers a block's
weights only while that block runs. A single process is the world-size-1 case: the model is moved.
"""

from __future__ import annotations

import torch

from posttrain.ranks import world_size


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
