"""Kahneman-Tversky optimization (KTO, a HALO; Ethayarajh et al. 2024): a loss on unpaired feedback.

Seed 003 L297-335 and L2355-2460 (SEED_NOTES 1.4):

    r_θ(x, y) = log πθ(y|x) − log π_ref(y|x)        (sums of the completion's token log-probs)
    z₀        = KL(πθ(y'|x) ‖ π_ref(y'|x))            (the reference point)
    v(x, y)   = λ_D σ(β (r_θ(x, y) − z₀))   if y is desirable
                λ_U σ(β (z₀ − r_θ(x, y)))   if y is undesirable
    L_KTO     = E_{x,y∼D} [ λ_y − v(x, y) ]

β is the risk-aversion parameter (default 0.1); λ_D, λ_U weigh desirable and undesirable examples
(default 1.0 each). The seed does not say how z₀ is estimated; as in the KTO paper and TRL it is
the mean of log πθ(y'|x) − log π_ref(y'|x) over MISMATCHED pairs (the completion y' of another
example paired with prompt x), clamped at 0 and carrying no gradient: it only moves the point
where gains turn into losses.

`apo_zero_unpaired` (TRL's other `loss_type`, APO-zero of D'Oosterlinck et al. 2024; seed 003
L2645-2650 names it without a formula) is the same loss with z₀ = 0: 1 − σ(β r_θ) for desirable and
σ(β r_θ) for undesirable completions (times λ_y), so no mismatched pairs are needed.
"""

from __future__ import annotations

from typing import Callable

import torch

LOSS_TYPES = ("kto", "apo_zero_unpaired")
RECOMMENDED_BALANCE = (1.0, 4.0 / 3.0)  # KTO paper eq. 8: λ_D n_D / (λ_U n_U) in [1, 4/3]


def kto_reference_point(policy_kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor,
                        all_reduce_sum: Callable[[list[float]], list[float]] | None = None) -> torch.Tensor:
    """z₀ = max(0, mean_i [log πθ(y'_i|x_i) − log π_ref(y'_i|x_i)]) over the mismatched pairs, detached.

    `all_reduce_sum` (e.g. `posttrain.ranks.all_reduce_sum`) sums [total, count] over
    processes, so every process uses the same z₀: the mean over all mismatched pairs of the step's
    micro-batch on every rank. An empty batch gives 0.
    """
    diff = (policy_kl_logps.detach().double() - ref_kl_logps.detach().double())
    total, count = float(diff.sum()), float(diff.numel())
    if all_reduce_sum is not None:
        total, count = all_reduce_sum([total, count])
    mean = total / count if count > 0 else 0.0
    return torch.tensor(max(mean, 0.0), dtype=torch.float32, device=policy_kl_logps.device)


def kto_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, desirable: torch.Tensor, kl: torch.Tensor | float,
             beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
             loss_type: str = "kto") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example KTO losses λ_y − v(x, y) and implicit rewards β r_θ (detached), both (batch,).

    policy_logps, ref_logps: summed completion log-probs log π(y|x) under the policy and the
    reference; desirable: bool (batch,); kl: the reference point z₀ (a number or 0-d tensor, no
    gradient; see `kto_reference_point`). Average the losses over examples for L_KTO.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    desirable = desirable.bool()
    logratios = policy_logps.float() - ref_logps.float()
    z0 = torch.as_tensor(kl, dtype=logratios.dtype, device=logratios.device).detach()
    if loss_type == "apo_zero_unpaired":  # APO-zero: gains and losses are measured from 0
        z0 = torch.zeros_like(z0)
    gain = torch.sigmoid(beta * (logratios - z0))  # σ(β(r − z₀)); σ(β(z₀ − r)) = 1 − gain
    value = torch.where(desirable, desirable_weight * gain, undesirable_weight * (1 - gain))
    weight = torch.where(desirable, torch.full_like(gain, desirable_weight), torch.full_like(gain, undesirable_weight))
    return weight - value, (beta * logratios).detach()


def balance_ratio(num_desirable: int, num_undesirable: int, desirable_weight: float = 1.0,
                  undesirable_weight: float = 1.0) -> float:
    """λ_D n_D / (λ_U n_U); the KTO paper recommends a value in [1, 4/3] (inf when n_U = 0)."""
    den = undesirable_weight * num_undesirable
    return desirable_weight * num_desirable / den if den > 0 else float("inf")
