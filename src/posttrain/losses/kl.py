"""Per-token KL estimators: the one registry (`KL_ESTIMATORS`) that the GRPO loss, PPO's reward
penalty and every KL metric read.

Each estimator maps the log-ratio of the sampled token, x_t = log π(y_t) − log π_ref(y_t), to a
sample estimate of KL(π‖π_ref) (Schulman 2020, "Approximating KL divergence"). With r = π_ref/π
(so log r = −x):

    k1 = −log r = x                       unbiased, can be negative per token. The InstructGPT
                                          reward penalty (seed 003 L2538-2552; SEED_NOTES 1.3) and
                                          the KL^rev of S0's GRPO loss (S0 L584-649)
    k2 = ½ (log r)² = ½ x²                biased, low variance, ≥ 0; on-policy its gradient is the
                                          exact KL's
    k3 = r − log r − 1 = e^{−x} + x − 1   unbiased, ≥ 0; DeepSeekMath GRPO's D_KL
                                          π_ref/π_θ − log(π_ref/π_θ) − 1 (S3 L2511, L2563,
                                          "unbiased, non-negative", Schulman 2020)

Adding an estimator is one decorated function of x. `LOSS_KL_ESTIMATORS` are the ones the seeds put
inside a policy loss (k1: S0 L640; k3: S3 L2511); the GRPO loss and its config accept only those.
"""

from __future__ import annotations

from typing import Callable

import torch

from posttrain.losses.advantages import _check_tokens

KL_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}


def register_kl_estimator(name: str):
    """Register `fn(log_ratio) -> per-token estimate` under `name` in KL_ESTIMATORS."""
    def add(fn):
        KL_ESTIMATORS[name] = fn
        return fn
    return add


@register_kl_estimator("k1")
def k1(log_ratio: torch.Tensor) -> torch.Tensor:
    return log_ratio


@register_kl_estimator("k2")
def k2(log_ratio: torch.Tensor) -> torch.Tensor:
    return 0.5 * log_ratio ** 2


@register_kl_estimator("k3")
def k3(log_ratio: torch.Tensor) -> torch.Tensor:
    return torch.exp(-log_ratio) + log_ratio - 1


LOSS_KL_ESTIMATORS = ("k3", "k1")  # GRPO's default first


def check_kl_estimator(estimator: str, allowed=None, name: str = "estimator") -> None:
    """A ValueError naming the allowed estimators (default: all registered) unless `estimator` is one."""
    allowed = tuple(KL_ESTIMATORS) if allowed is None else tuple(allowed)
    if estimator not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {estimator!r}")


def kl_estimate(logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor | None = None,
                estimator: str = "k1") -> torch.Tensor:
    """Per-token estimates of KL(π‖π_ref), (B, T), from the sampled tokens' log-probs under π (`logps`)
    and π_ref (`ref_logps`), by the registered `estimator` (module docstring).

    Computed in float32 (float64 stays float64). Gradients flow through both inputs (the GRPO KL term
    needs the one through `logps`; detach what should not train). With `mask` (B, T, 0/1), masked
    positions are 0 and may hold garbage (even inf): the log-ratio is zeroed BEFORE the estimator, so
    neither the value nor the gradient (0 · ∞ = NaN through a where) sees them.
    """
    check_kl_estimator(estimator)
    if mask is not None:
        _check_tokens(mask, logps=logps, ref_logps=ref_logps)
    dtype = torch.promote_types(logps.dtype, torch.float32)
    log_ratio = logps.to(dtype) - ref_logps.to(dtype)  # log π − log π_ref = −log r
    if mask is None:
        return KL_ESTIMATORS[estimator](log_ratio)
    valid = mask.bool()
    kl = KL_ESTIMATORS[estimator](torch.where(valid, log_ratio, 0))
    return torch.where(valid, kl, 0)


def kl_per_token(logps: torch.Tensor, ref_logps: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """`kl_estimate` without a mask, estimator third, GRPO's k3 by default: the policy loss's call,
    whose inputs are already zero at padding."""
    return kl_estimate(logps, ref_logps, None, estimator)
