"""Supervised fine-tuning loss: token-level cross-entropy, averaged over every trained token.

    L_SFT(theta) = - 1 / (sum_i T_i) * sum_i sum_{t=1..T_i} log P_theta(y_{i,t} | x_i, y_{i,<t})

(seed 000 eq. 19, S0 L451-475; SEED_NOTES 1.1). The mean is over all completion tokens of the whole
batch, not a mean of per-sequence means: a long completion counts in proportion to its length.
With gradient accumulation and several processes the "batch" is the global one, so this function
returns the *sum* and the training loop divides by the token count of the whole step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sft_loss(logits: torch.Tensor, labels: torch.Tensor, num_tokens: float | torch.Tensor | None = None, ignore_index: int = -100) -> torch.Tensor:
    """Sum of -log p(label) over positions whose label is not `ignore_index`, divided by
    `num_tokens` when given (pass the global token count to get eq. 19 exactly).

    logits: (..., vocab) scores at the positions that predict `labels` (already shifted).
    labels: (...) target token ids, `ignore_index` where no loss is taken.
    The log-softmax runs in float32 whatever the logits' dtype.
    """
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=ignore_index, reduction="sum")
    return loss if num_tokens is None else loss / num_tokens


def count_tokens(labels: torch.Tensor, ignore_index: int = -100) -> int:
    """The number of trained tokens: the denominator of eq. 19."""
    return int((labels != ignore_index).sum())
