"""The clipped policy-gradient loss of the GRPO family (GRPO, DAPO, Dr. GRPO, GSPO, GRPO+, PPO's actor).

The seeds disagree on GRPO in four ways (SEED_NOTES 1.3): loss aggregation, KL estimator, ratio
level and std scaling. The first three are options of `policy_loss`; std scaling belongs to the
advantages (`posttrain.losses.advantages`), which this function receives ready-made.

For a sequence i with completion tokens t ∈ o_i (mask m_{i,t} = 1) and advantage Â_{i,t}:

    ratio     r_{i,t} = π_θ(o_{i,t}|q, o_{i,<t}) / π_old(o_{i,t}|q, o_{i,<t}) = exp(logp − old_logp)
              ratio_level="token"    (DeepSeekMath, seed 003 L2490-2527)
              ratio_level="sequence" s_i = exp( (1/|o_i|) Σ_t (logp − old_logp) ) for every t of o_i
                                     (GSPO, Zheng et al. 2025; the length-normalised form of
                                     DeepSeek-R1's sequence ratio π_θ(o_i|q)/π_old(o_i|q), seed 002
                                     L377-385; TRL's importance_sampling_level="sequence")
              ratio_level="sequence_product"  ρ_i = π_θ(o_i|q)/π_old(o_i|q) = exp( Σ_t (logp − old_logp) )
                                     for every t of o_i: DeepSeek-R1's sequence ratio as seed 002
                                     L377-385 writes it (eq. 1-3), and GRPO+'s ρ_i (seed 003 L2859-2985);
                                     with aggregation "grpo" the loss is (1/G) Σ_i ℓ_i, their form
    surrogate ℓ_{i,t} = −min( r Â, clip(r, 1 − ε_low, 1 + ε_high) Â )   + β KL_{i,t}
              (PPO-clip, seed 003 L214-255; clip-higher when ε_high > ε_low, DAPO seed 003 L2748-2857,
              GRPO+ L2859-2985. With `delta`, the unclipped branch is r ← min(r, δ): INTELLECT-2's
              two-sided clip, which bounds the otherwise unbounded r Â for Â < 0 and r ≫ 1.)
    KL        k3 = π_ref/π_θ − log(π_ref/π_θ) − 1   (DeepSeekMath, seed 003 L2511; ≥ 0, unbiased)
              k1 = log π_θ − log π_ref              (the form seed 000 L584-649 attributes to TRL)
              (`losses.kl`: the registry; LOSS_KL_ESTIMATORS are the ones accepted here)
              kl_importance_weight=True trains on r·KL instead (DeepSeek-V3.2; TRL 1.16's default).
    entropy   − β_H H_{i,t}, H the policy's entropy at token t (the entropy bonus, seed 003 L1260-1268,
              c_e = 0.01 there; GRPO+ drops it, L2874-2879): `entropy_coef` β_H, aggregated like ℓ.

Aggregation (the seeds' three normalisers):

    "grpo"        L = (1/G) Σ_i (1/|o_i|) Σ_t ℓ_{i,t}        DeepSeekMath: sequence mean, then mean
    "token_mean"  L = (1/Σ_i |o_i|) Σ_i Σ_t ℓ_{i,t}        DAPO's token-level loss (TRL bnpo/dapo)
    "dr_grpo"     L = (1/(G·L_max)) Σ_i Σ_t ℓ_{i,t}        Dr. GRPO: a constant, L_max = max_completion_length

`policy_loss` returns the numerator as a SUM over the micro-batch and its share of the denominator
(`weight`): sequences for grpo / dr_grpo, tokens for token_mean. The training loop divides the
step's summed loss by the step's summed weight, so gradient accumulation and several processes give
exactly the large-batch loss above (for token_mean: one token mean over the whole step, as DAPO
writes it, not a mean of per-micro-batch means).

Per-sign clipping (seed 000 L715-753). For Â > 0 the objective grows with r only up to 1 + ε_high;
above it the term is the constant (1 + ε_high) Â and the gradient is 0. For Â < 0 it is floored at
1 − ε_low: below, the gradient is 0. Everywhere else ∂ℓ/∂logp = −Â r (the ratio's own gradient is
r ∇logp). So updates that already moved the token's probability far enough in the advantage's
direction stop; moves against it are never clipped.

Why the loss sits near 0 (the "loss is 0" complaint; the trainer's --help points here). With
β = 0 and μ = 1 (one gradient step per batch of samples), the policy is the sampler: r = 1 at every
token, so ℓ_{i,t} = −Â_i and the "grpo" loss is −mean_i Â_i. Group-normalised advantages average to
0 within each group, so the loss value is ≈ 0 (exactly 0 for "grpo" when whole groups are in the
batch; a length-weighted mean for the others). Its gradient is NOT 0:
∇L = −(1/G) Σ_i (Â_i/|o_i|) Σ_t ∇log π_θ(o_{i,t}) — likely sequences are pushed up, unlikely ones
down, and those cancel only in value. Watch the reward, not this loss; with β > 0 the KL term grows
from 0 as the policy leaves the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from posttrain.losses.kl import LOSS_KL_ESTIMATORS, check_kl_estimator, kl_per_token

AGGREGATIONS = ("grpo", "token_mean", "dr_grpo")
POLICY_LOSSES = ("clip", "penalty", "clip_penalty")  # PPO-clip, PPO-penalty, the two together (S3 L1022-1039)
RATIO_LEVELS = ("token", "sequence", "sequence_product")


@dataclass
class PolicyLossOutput:
    loss: torch.Tensor  # scalar SUM in the aggregation's units; the loop divides by the step's Σ weight
    weight: float  # this micro-batch's share of the denominator: sequences (grpo, dr_grpo) or tokens
    metrics: dict = field(default_factory=dict)  # (numerator, denominator) tuples over tokens


def _check(logps, old_logps, advantages, mask, ref_logps, beta, kl_estimator, ratio_level, epsilon_low,
           epsilon_high, aggregation, max_completion_length, delta, entropy, entropy_coef, tis_weights) -> None:
    if tis_weights is not None and tis_weights.shape != logps.shape:
        raise ValueError(f"tis_weights must be {tuple(logps.shape)}, got {tuple(tis_weights.shape)}")
    if entropy_coef < 0:
        raise ValueError(f"entropy_coef must be >= 0, got {entropy_coef}")
    if entropy_coef > 0 and (entropy is None or entropy.shape != logps.shape):
        raise ValueError(f"entropy_coef={entropy_coef} > 0 needs entropy: the policy's entropy per token, "
                         f"{tuple(logps.shape)}, with its gradient")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if ratio_level not in RATIO_LEVELS:
        raise ValueError(f"ratio_level must be one of {RATIO_LEVELS}, got {ratio_level!r}")
    check_kl_estimator(kl_estimator, LOSS_KL_ESTIMATORS, "kl_estimator")
    if logps.dim() != 2 or old_logps.shape != logps.shape or mask.shape != logps.shape:
        raise ValueError(f"logps, old_logps and mask must all be (batch, tokens); got {tuple(logps.shape)}, "
                         f"{tuple(old_logps.shape)}, {tuple(mask.shape)}")
    if advantages.shape not in (logps.shape[:1], logps.shape):
        raise ValueError(f"advantages must be (batch,) or (batch, tokens) = {tuple(logps.shape)}; "
                         f"got {tuple(advantages.shape)}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if beta > 0 and ref_logps is None:
        raise ValueError(f"beta={beta} > 0 needs ref_logps (the reference policy's log-probs of the same tokens); "
                         "pass them, or set beta=0 to train without a KL term")
    if ref_logps is not None and ref_logps.shape != logps.shape:
        raise ValueError(f"ref_logps must be {tuple(logps.shape)}, got {tuple(ref_logps.shape)}")
    if epsilon_low < 0 or epsilon_high < 0:
        raise ValueError(f"epsilon_low and epsilon_high must be >= 0, got {epsilon_low}, {epsilon_high}")
    if aggregation == "dr_grpo" and (max_completion_length is None or max_completion_length <= 0):
        raise ValueError("aggregation='dr_grpo' divides by a constant: set max_completion_length "
                         f"(the generation limit in tokens), got {max_completion_length!r}")
    if delta is not None and delta <= 1 + epsilon_high:
        raise ValueError(f"delta (the upper bound of the ratio for negative advantages) must be > 1 + epsilon_high "
                         f"= {1 + epsilon_high}, got {delta}")


def policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                ref_logps: torch.Tensor | None = None, beta: float = 0.0, kl_estimator: str = "k3",
                ratio_level: str = "token", epsilon_low: float = 0.2, epsilon_high: float = 0.2,
                aggregation: str = "grpo", max_completion_length: int | None = None,
                delta: float | None = None, kl_importance_weight: bool = False,
                entropy: torch.Tensor | None = None, entropy_coef: float = 0.0,
                tis_weights: torch.Tensor | None = None, clip: bool = True, old_kl_coef: float = 0.0) -> PolicyLossOutput:
    """The clipped surrogate (+ β·KL) of the module docstring, summed in `aggregation`'s units.

    logps: (B, T) log π_θ of the sampled completion tokens (carries the gradient); old_logps: the
    sampler's (π_old) log-probs of the same tokens; ref_logps: the reference policy's (only needed
    when beta > 0; when given with beta = 0 the KL is measured, not trained on); mask: (B, T), 1 on
    completion tokens; advantages: (B,) one per sequence (GRPO) or (B, T) per token (PPO with GAE).
    Values at masked positions are ignored (they may be padding garbage, even inf or nan).

    Returns `PolicyLossOutput(loss, weight, metrics)`: the micro-batch's loss is loss / weight.
    Metrics are (numerator, denominator) pairs over completion tokens: `clip_ratio/low` (Â < 0 and
    r < 1 − ε_low), `clip_ratio/high` (Â > 0 and r > 1 + ε_high), `clip_ratio/region` (either),
    `ratio/mean`, and `kl` (the chosen estimator's token mean) when beta > 0 or ref_logps is given.
    With ratio_level="sequence" or "sequence_product" a sequence's ratio counts once per token.
    entropy: (B, T) the policy's entropy per token, with its gradient; entropy_coef > 0 subtracts
    entropy_coef · H per token (the entropy bonus), aggregated like the surrogate.

    tis_weights: (B, T) truncated importance-sampling weights w_t = min(π_old/π_rollout, C) (Yao et
    al. 2025, not in the seeds): when a rollout engine's log-probs differ from the trainer's, old_logps
    are the trainer's and each token's surrogate is multiplied by w_t (no gradient), so the update
    stays an unbiased-up-to-truncation estimate for the distribution the engine actually sampled.

    kl_importance_weight: train on r·KL_t instead of KL_t (DeepSeek-V3.2's unbiased KL gradient, not
    in the seeds; TRL 1.16's default `use_bias_correction_kl=True`). Same value on-policy (r = 1), a
    different gradient; the `kl` metric stays the unweighted token mean.

    clip=False, old_kl_coef = β_old > 0: PPO-penalty (Schulman et al. 2017; S3 L1022-1030),
    ℓ_{i,t} = −r Â + β_old KL_t(π_old‖π_θ), no clipping; clip=True with old_kl_coef > 0 is L^CLIP+KL
    (S3 L1031-1039). The seed's KL is the full-vocabulary Σ_a π_old(a) log(π_old(a)/π_θ(a)); π_old's
    distributions are not kept, so it is estimated on the sampled token, which π_old drew: with
    ρ = π_θ/π_old, KL_t = ρ − log ρ − 1 (k3 with π_θ in the reference's place; ≥ 0, and its expectation
    and its gradient's under π_old are the full KL's and its gradient). Its token mean is `kl_old`.
    """
    if old_kl_coef < 0:
        raise ValueError(f"old_kl_coef must be >= 0, got {old_kl_coef}")
    _check(logps, old_logps, advantages, mask, ref_logps, beta, kl_estimator, ratio_level, epsilon_low,
           epsilon_high, aggregation, max_completion_length, delta, entropy, entropy_coef, tis_weights)
    dtype = torch.promote_types(logps.dtype, torch.float32)  # bf16 log-probs: do the arithmetic in fp32
    valid = mask.bool()
    m = valid.to(dtype)
    zero = torch.zeros((), dtype=dtype, device=logps.device)
    # Padding may hold garbage (inf, nan): zero it BEFORE exp, as a where() after exp would still
    # send NaN gradients back.
    def clean(x):
        return torch.where(valid, x.to(dtype), zero)

    lp = clean(logps)
    log_ratio = lp - clean(old_logps.detach())
    if ratio_level == "sequence":
        log_ratio = log_ratio.sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1.0)  # (B, 1)
    elif ratio_level == "sequence_product":
        log_ratio = log_ratio.sum(-1, keepdim=True)  # (B, 1): log π_θ(o|q) − log π_old(o|q)
    ratio = torch.exp(log_ratio)  # (B, T), or (B, 1) at sequence level
    adv = advantages.detach()
    adv = adv.to(dtype).unsqueeze(-1) if adv.dim() == 1 else clean(adv)  # (B, 1) broadcasts over tokens

    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    unclipped = ratio if delta is None else torch.clamp(ratio, max=delta)
    per_token = -torch.minimum(unclipped * adv, clipped * adv) if clip else -ratio * adv
    per_token = per_token.expand(logps.shape)
    if tis_weights is not None:
        per_token = per_token * clean(tis_weights.detach())
    if entropy_coef > 0:
        per_token = per_token - entropy_coef * clean(entropy)

    kl_old = None
    if old_kl_coef > 0:  # KL(π_old‖π_θ) on π_old's tokens: kl_per_token's k3 of (log π_old − log π_θ)
        kl_old = kl_per_token(clean(old_logps.detach()), lp, "k3")
        per_token = per_token + old_kl_coef * kl_old

    kl = None
    if ref_logps is not None:
        ref = clean(ref_logps.detach())  # padding: logp = ref = 0, so KL = 0 there
        if beta > 0:
            kl = kl_per_token(lp, ref, kl_estimator)
            # r · KL: the KL is estimated on π_old's samples, so weighting by r (with its gradient)
            # makes the gradient that of KL(π_θ‖π_ref) off-policy too (TRL's use_bias_correction_kl)
            per_token = per_token + beta * (kl * ratio if kl_importance_weight else kl)
        else:  # measured only: no graph through the reference term
            with torch.no_grad():
                kl = kl_per_token(lp.detach(), ref, kl_estimator)
    per_token = torch.where(valid, per_token, zero)

    tokens_per_seq = m.sum(-1)
    if aggregation == "grpo":
        loss = (per_token.sum(-1) / tokens_per_seq.clamp(min=1.0)).sum()
        weight = float(logps.shape[0])
    elif aggregation == "token_mean":
        loss = per_token.sum()
        weight = float(tokens_per_seq.sum())
    else:  # dr_grpo
        loss = per_token.sum() / float(max_completion_length)
        weight = float(logps.shape[0])

    with torch.no_grad():
        n_tokens = m.sum()
        r = ratio.detach().expand(logps.shape)
        low = ((r < 1 - epsilon_low) & (adv < 0)).to(dtype) * m
        high = ((r > 1 + epsilon_high) & (adv > 0)).to(dtype) * m
        metrics = {
            "clip_ratio/low": (low.sum(), n_tokens),
            "clip_ratio/high": (high.sum(), n_tokens),
            "clip_ratio/region": (torch.maximum(low, high).sum(), n_tokens),
            "ratio/mean": ((r * m).sum(), n_tokens),
        }
        if kl is not None:
            metrics["kl"] = ((kl.detach() * m).sum(), n_tokens)
        if kl_old is not None:
            metrics["kl_old"] = ((kl_old.detach() * m).sum(), n_tokens)
    return PolicyLossOutput(loss=loss, weight=weight, metrics=metrics)


def soft_overlong_penalty(lengths: torch.Tensor, max_length: int, cache: int) -> torch.Tensor:
    """DAPO's soft overlong punishment R_length(y), added to the reward (seed 003 L2830).

        R_length(y) = 0                                  if |y| ≤ L_max − L_cache
                      ((L_max − L_cache) − |y|) / L_cache  if L_max − L_cache < |y| ≤ L_max
                      −1                                 if |y| > L_max

    lengths: (N,) completion lengths |y| in tokens; max_length = L_max; cache = L_cache, the
    punishment interval (DAPO: 20,480 and 4,096). Returns (N,) float penalties in [−1, 0].
    """
    if not 0 < cache <= max_length:
        raise ValueError(f"cache must be in (0, max_length={max_length}], got {cache}")
    lengths = torch.as_tensor(lengths).to(torch.float32)
    expected = float(max_length - cache)
    ramp = (expected - lengths) / cache
    return torch.where(lengths <= expected, torch.zeros_like(lengths),
                       torch.where(lengths <= max_length, ramp, torch.full_like(lengths, -1.0)))
