"""PPO-penalty and clip + KL in `policy_loss` (clip=False, old_kl_coef = β_old): hand-computed values and
gradients, and the sampled KL(π_old‖π_θ) against the seed's full-vocabulary sum in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.losses.policy import policy_loss

# The same two sequences as test_policy.py: ratios r = π_θ/π_old, Â = +1 and −0.5, the last token padding.
RATIOS = [[1.1, 1.5, 0.7], [0.7, 1.5, 9.0]]
OLD = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.3, -2.5]], dtype=torch.float64)
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
ADV = torch.tensor([1.0, -0.5], dtype=torch.float64)


def kl(r: float) -> float:
    """KL(π_old‖π_θ) on a token π_old drew: r − log r − 1 (k3 with ρ = π_θ/π_old)."""
    return r - math.log(r) - 1


# kl(1.1) = 0.0046898, kl(1.5) = 0.0945349, kl(0.7) = 0.0566749; over the five tokens 0.3071095
KL_SUM = kl(1.1) + 2 * kl(1.5) + 2 * kl(0.7)


def logps_for(ratios) -> torch.Tensor:
    return (OLD + torch.tensor(ratios, dtype=torch.float64).log()).requires_grad_(True)


def test_penalty_is_the_unclipped_surrogate_plus_beta_kl_old():
    """−r Â per token, never clipped: row 0 −1.1 −1.5 −0.7, row 1 +0.35 +0.75 (sum −2.2), + 0.5 KL_SUM.
    Gradient per token: −Â r + β (r − 1): row 0 −1.05 −1.25 −0.85, row 1 0.2 1.0, padding 0."""
    lp = logps_for(RATIOS)
    out = policy_loss(lp, OLD, ADV, MASK, aggregation="token_mean", clip=False, old_kl_coef=0.5)
    assert float(out.loss.detach()) == pytest.approx(-2.2 + 0.5 * KL_SUM) and out.weight == 5.0
    num, den = out.metrics["kl_old"]
    assert float(num) / float(den) == pytest.approx(KL_SUM / 5)
    out.loss.backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[-1.05, -1.25, -0.85], [0.2, 1.0, 0.0]], dtype=torch.float64))


def test_clip_penalty_is_the_clipped_surrogate_plus_beta_kl_old():
    """L^CLIP+KL: the clipped per-token losses (−1.1 −1.2 −0.7 | +0.4 +0.75, sum −1.85) + 0.5 KL_SUM; the two
    clipped tokens (r = 1.5 with Â > 0, r = 0.7 with Â < 0) keep only the KL's gradient β (r − 1)."""
    lp = logps_for(RATIOS)
    out = policy_loss(lp, OLD, ADV, MASK, aggregation="token_mean", old_kl_coef=0.5)
    assert float(out.loss.detach()) == pytest.approx(-1.85 + 0.5 * KL_SUM)
    out.loss.backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[-1.05, 0.25, -0.85], [-0.15, 1.0, 0.0]], dtype=torch.float64))


def test_without_beta_old_nothing_changes():
    lp = logps_for(RATIOS)
    plain = policy_loss(lp, OLD, ADV, MASK)
    assert float(policy_loss(lp, OLD, ADV, MASK, old_kl_coef=0.0).loss.detach()) == float(plain.loss.detach())
    assert "kl_old" not in plain.metrics
    with pytest.raises(ValueError, match="old_kl_coef must be >= 0"):
        policy_loss(lp, OLD, ADV, MASK, old_kl_coef=-1.0)


def test_sampled_kl_old_matches_the_full_vocabulary_kl_and_its_gradient():
    """The seed's KL is Σ_a π_old(a) log(π_old(a)/π_θ(a)). Over a 5-token vocabulary, the expectation under
    π_old of the per-token term (each token one sequence, weighted by π_old(a)) is exactly that sum, and so is
    its gradient in π_θ's logits: the estimate is unbiased in value and in gradient."""
    old = torch.log_softmax(torch.tensor([0.3, -1.0, 2.0, 0.0, -0.5], dtype=torch.float64), -1)
    logits = torch.tensor([1.0, 0.2, -0.3, 0.5, 0.0], dtype=torch.float64, requires_grad=True)
    new = torch.log_softmax(logits, -1)
    zero = torch.zeros(1, dtype=torch.float64)
    expected = sum(old[a].exp() * policy_loss(new[a].view(1, 1), old[a].view(1, 1), zero, torch.ones(1, 1, dtype=torch.float64),
                                              aggregation="token_mean", clip=False, old_kl_coef=1.0).loss for a in range(5))
    exact = (old.exp() * (old - new)).sum()
    assert float(expected.detach()) == pytest.approx(float(exact.detach()), rel=1e-12)
    grad_expected, = torch.autograd.grad(expected, logits, retain_graph=True)
    grad_exact, = torch.autograd.grad(exact, logits)
    torch.testing.assert_close(grad_expected, grad_exact)
