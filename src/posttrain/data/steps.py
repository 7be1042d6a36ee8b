"""The two protocols the training loop reads: `Algorithm` (how a micro-batch becomes a loss) and
`StepSource` (where the micro-batches of each optimizer step come from), and `OfflineSource`, which
walks a fixed dataset in a seeded order.

Online algorithms plug in their own source and algorithm (`online.source.OnlineSource`: rollout ->
reward -> advantages; `online.algorithm.OnlineRL`). The protocols live in the data layer so that the
online layer, below the loop, can implement them.
"""

from __future__ import annotations

from typing import Any

import torch

import posttrain.ranks as ranks
from posttrain.errors import DataError


class Algorithm:
    """What an algorithm gives the loop. Metrics returned by `loss` are sums over the micro-batch
    (divided by the step's total weight when logged), or `(numerator, denominator)` pairs."""

    def setup(self, model) -> None:
        """Called once with the prepared (LoRA-wrapped, not yet sharded) policy, e.g. to make a reference model."""

    def collate(self, items: list) -> dict[str, Any]:
        raise NotImplementedError

    def loss(self, model, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """The summed loss of the micro-batch (forward with `use_cache=False`) and metric sums."""
        raise NotImplementedError

    def batch_weight(self, batch: dict[str, Any]) -> float:
        """Called on the CPU batch before it moves to the device."""
        raise NotImplementedError

    def evaluate_by_generation(self, model) -> dict[str, float]:
        """Online algorithms: `eval_*` metrics from sampling on held-out prompts (default: none)."""
        return {}

    def after_step(self, model, step: int, metrics: dict) -> dict:
        """Called after every optimizer step with the step's metrics (over all processes); e.g. to move the
        reference or a loss coefficient. Returns values to log with the step (the latest are logged)."""
        return {}

    def own_optimizer(self) -> tuple[tuple[str, ...], float] | None:
        """(module names, learning rate): modules trained as if by an optimizer of their own, with this
        learning rate and their own gradient-norm clip (a separate critic's); None: one for everything."""
        return None

    def state_dict(self) -> dict:
        """What the algorithm changes as it trains (a KL controller, a data position), saved in every
        checkpoint so that a resumed run ends where the uninterrupted one ends."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def num_tokens(self, batch: dict[str, Any]) -> int:
        """Real (non-pad) tokens in the batch, for tokens/s."""
        return int(batch["num_tokens"]) if "num_tokens" in batch else int(batch["input_ids"].numel())


class StepSource:
    """Where the micro-batches of each optimizer step come from (this rank's share of them).
    Under FSDP every rank must return the same number of micro-batches for a step, and `loss`
    must return the same metric keys on every rank (they are all-reduced)."""

    steps_per_epoch: int | None = None

    def next_step(self, step: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def metrics(self) -> dict[str, float]:
        """Extra numbers about the step just made (e.g. rollout rewards); logged as window means."""
        return {}

    def completions(self) -> list[dict]:
        """Sample completions made since the last call, as table rows (prompt, completion, reward, ...) for
        the experiment trackers; online sources have them, offline data none."""
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class OfflineSource(StepSource):
    """A fixed list of items, reshuffled every epoch with `seed + epoch`. Each step takes the next
    global batch of batch_size x gradient_accumulation_steps x world_size items; a rank reads its
    contiguous share. The order is a pure function of (seed, step), so resuming needs only the step.
    An incomplete last global batch of an epoch is dropped."""

    def __init__(self, items: list, collate, batch_size: int, gradient_accumulation_steps: int, seed: int, what: str = "examples"):
        self.items, self.collate, self.seed, self.what = items, collate, seed, what
        self.batch_size, self.accumulation = batch_size, gradient_accumulation_steps
        self._order: tuple[int, list[int]] | None = None

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.accumulation * ranks.world_size()

    @property
    def steps_per_epoch(self) -> int:
        steps = len(self.items) // self.global_batch
        if steps < 1:
            raise DataError(
                f"the training data has {len(self.items)} {self.what}, fewer than one optimizer step needs "
                f"(batch_size x gradient_accumulation_steps x processes = {self.global_batch}); lower batch_size or add data"
            )
        return steps

    def _epoch_order(self, epoch: int) -> list[int]:
        if self._order is None or self._order[0] != epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._order = (epoch, torch.randperm(len(self.items), generator=g).tolist())
        return self._order[1]

    def next_step(self, step: int) -> list[dict[str, Any]]:
        epoch, index = divmod(step, self.steps_per_epoch)
        g = self.global_batch
        mine = ranks.shard_items(self._epoch_order(epoch)[index * g:(index + 1) * g])
        b = self.batch_size
        return [self.collate([self.items[i] for i in mine[k * b:(k + 1) * b]]) for k in range(self.accumulation)]
