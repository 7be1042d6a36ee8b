"""PPO-ptx (S3 L1198-1230): γ × the next-token loss of input-output data, added to every micro-batch,
so the policy keeps what SFT taught it. The data is read in a fixed cycle; `position` is part of the
algorithm's state, so a resumed run reads the same examples the uninterrupted one does."""

from __future__ import annotations

import torch

import posttrain.ranks as ranks
from posttrain.data.collate import IGNORE_INDEX, collate_rows
from posttrain.losses.sft import sft_loss
from posttrain.models.logprobs import logits_at


class PtxTerm:
    def __init__(self, rows: list, coef: float, batch_size: int, pad_token_id: int):
        self.rows, self.coef, self.batch_size, self.pad_token_id = rows, coef, batch_size, pad_token_id
        self.position = 0

    def loss(self, model, device, metrics: dict, tokens: torch.Tensor) -> torch.Tensor:
        """γ × the mean next-token loss of the next micro-batch of ptx data (`ptx_loss` into metrics,
        weighted by the policy micro-batch's `tokens`)."""
        world, rank = ranks.world_size(), ranks.rank()  # processes read interleaved examples, never the same ones
        rows = [self.rows[(self.position + rank + world * k) % len(self.rows)] for k in range(self.batch_size)]
        self.position += self.batch_size * world
        batch = collate_rows(rows, self.pad_token_id)
        labels = batch["labels"].to(device)
        select = labels != IGNORE_INDEX
        logits = logits_at(model, select, input_ids=batch["input_ids"].to(device), position_ids=batch["position_ids"].to(device))
        mean = sft_loss(logits, labels[select]) / max(1, int(select.sum()))
        metrics["ptx_loss"] = (mean.detach() * tokens, tokens)
        return self.coef * mean
