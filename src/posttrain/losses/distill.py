"""Knowledge distillation: a student matches a teacher's next-token distribution (soft targets),
optionally mixed with cross-entropy on the data's own tokens (hard targets).

Per completion token, with S = softmax(student logits / T), P = softmax(teacher logits / T) and the
mixture M = beta * P + (1 - beta) * S, the generalized Jensen-Shannon divergence of GKD (Agarwal et
al. 2024, eq. 1, in TRL's GKDTrainer.generalized_jsd_loss convention):

    D_beta = beta * KL(P || M) + (1 - beta) * KL(S || M)        0 < beta < 1
    D_0    = KL(P || S)   forward KL: the student covers every mode of the teacher (classic KD)
    D_1    = KL(S || P)   reverse KL: the student puts its mass where the teacher does (mode-seeking)

(The two ends are defined as the two KLs, as TRL does; D_beta itself shrinks to 0 at both ends.) The
temperature divides both logits, as in TRL (no T^2 factor). The loss of a token is

    (1 - hard_weight) * D_beta + hard_weight * (-log S_{T=1}(y_t))

the soft/hard mix of Llama 4 Behemoth's distillation (S3 L2031-2035 give no formula; this is the
usual convex mix of Hinton et al.). Context distillation (Askell et al., S3 L3195) is the same loss
with a teacher that reads a system prompt the student does not. Returns sums: the training loop
divides by the completion tokens of the whole step, so the loss is a token mean over the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float, temperature: float = 1.0) -> torch.Tensor:
    """D_beta per position, (N,), from (N, vocab) logits at the same positions; float32."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    s = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    p = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if beta == 0.0:
        return kl(p, s)
    if beta == 1.0:
        return kl(s, p)
    m = torch.logsumexp(torch.stack([p + math.log(beta), s + math.log1p(-beta)]), dim=0)
    return beta * kl(p, m) + (1.0 - beta) * kl(s, m)


def kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a || b) per row, from log-probabilities over the last dimension."""
    return (log_a.exp() * (log_a - log_b)).sum(-1)


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *, beta: float,
                 temperature: float = 1.0, hard_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(the summed loss, D_beta per token): (1 - hard_weight) * D_beta + hard_weight * CE(labels),
    summed over the N completion tokens. `labels` (N,) are the hard targets (the data's tokens)."""
    divergence = generalized_jsd(student_logits, teacher_logits, beta, temperature)
    loss = (1.0 - hard_weight) * divergence.sum()
    if hard_weight:
        loss = loss + hard_weight * F.cross_entropy(student_logits.float(), labels, reduction="sum")
    return loss, divergence
