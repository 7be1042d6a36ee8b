"""The GRPO-family policy loss on hand-computed numbers: aggregations, per-sign clipping (with
autograd), clip-higher, delta, sequence-level ratios, k1 / k3, masks, accumulation, and the
on-policy "loss is 0 but the gradient is not" case. TRL parity lives in test_policy_loss_trl.py."""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.losses.policy import PolicyLossOutput, kl_per_token, policy_loss, soft_overlong_penalty

# Two sequences of 3 tokens, the second with 2 completion tokens. Ratios chosen so the per-token
# losses are easy by hand at ε = 0.2:
#   row 0, Â = +1:   r = 1.1 -> −1.1;  r = 1.5 -> capped at 1.2 -> −1.2;  r = 0.7 -> −0.7 (not clipped for Â > 0)
#   row 1, Â = −0.5: r = 0.7 -> floored at 0.8 -> +0.4;  r = 1.5 -> +0.75 (not clipped for Â < 0);  padding
RATIOS = [[1.1, 1.5, 0.7], [0.7, 1.5, 9.0]]
OLD = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.3, -2.5]], dtype=torch.float64)
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
ADV = torch.tensor([1.0, -0.5], dtype=torch.float64)
ROW0, ROW1 = [-1.1, -1.2, -0.7], [0.4, 0.75]


def logps_for(ratios, old=OLD) -> torch.Tensor:
    return (old + torch.tensor(ratios, dtype=torch.float64).log()).requires_grad_(True)


def num(x) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def mean_loss(out: PolicyLossOutput) -> float:
    return num(out.loss) / out.weight


def frac(metric) -> float:
    return num(metric[0]) / num(metric[1])


def test_aggregations_hand_computed():
    lp = logps_for(RATIOS)
    grpo = policy_loss(lp, OLD, ADV, MASK, aggregation="grpo")
    # sequence means: −3.0/3 = −1.0 and 1.15/2 = 0.575; summed, over 2 sequences
    assert num(grpo.loss) == pytest.approx(-1.0 + 0.575) and grpo.weight == 2.0
    assert mean_loss(grpo) == pytest.approx(-0.2125)
    tok = policy_loss(lp, OLD, ADV, MASK, aggregation="token_mean")
    assert num(tok.loss) == pytest.approx(-3.0 + 1.15) and tok.weight == 5.0
    assert mean_loss(tok) == pytest.approx(-0.37)
    dr = policy_loss(lp, OLD, ADV, MASK, aggregation="dr_grpo", max_completion_length=4)
    assert num(dr.loss) == pytest.approx(-1.85 / 4) and dr.weight == 2.0
    assert mean_loss(dr) == pytest.approx(-0.23125)


def test_metrics_hand_computed():
    out = policy_loss(logps_for(RATIOS), OLD, ADV, MASK)
    assert frac(out.metrics["clip_ratio/low"]) == pytest.approx(1 / 5)  # row 1, r = 0.7, Â < 0
    assert frac(out.metrics["clip_ratio/high"]) == pytest.approx(1 / 5)  # row 0, r = 1.5, Â > 0
    assert frac(out.metrics["clip_ratio/region"]) == pytest.approx(2 / 5)
    assert frac(out.metrics["ratio/mean"]) == pytest.approx((1.1 + 1.5 + 0.7 + 0.7 + 1.5) / 5)
    assert "kl" not in out.metrics
    assert all(float(den) == 5.0 for _, den in out.metrics.values())


def test_per_sign_clipping_gradients():
    """Seed 000 L715-753: Â > 0 capped at 1+ε (gradient 0 above), Â < 0 floored at 1−ε (gradient 0
    below), elsewhere ∂ℓ/∂logp = −Â·r."""
    lp = logps_for(RATIOS)
    out = policy_loss(lp, OLD, ADV, MASK, aggregation="token_mean")
    out.loss.backward()
    expected = [[-1.0 * 1.1, 0.0, -1.0 * 0.7],  # r = 1.5 > 1.2 with Â > 0: flat
                [0.0, 0.5 * 1.5, 0.0]]  # r = 0.7 < 0.8 with Â < 0: flat; padding: 0
    torch.testing.assert_close(lp.grad, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("ratio,adv,grad", [
    (1.19, 1.0, -1.19), (1.21, 1.0, 0.0),  # Â > 0: gradient until 1+ε, then none
    (0.5, 1.0, -0.5),  # Â > 0 and r small: never clipped (the update raises the probability)
    (0.81, -1.0, 0.81), (0.79, -1.0, 0.0),  # Â < 0: gradient down to 1−ε, then none
    (3.0, -1.0, 3.0),  # Â < 0 and r large: never clipped, unbounded without delta
])
def test_case_analysis_single_token(ratio, adv, grad):
    lp = torch.tensor([[math.log(ratio)]], dtype=torch.float64, requires_grad=True)
    out = policy_loss(lp, torch.zeros(1, 1, dtype=torch.float64), torch.tensor([adv], dtype=torch.float64),
                      torch.ones(1, 1, dtype=torch.float64))
    assert num(out.loss) == pytest.approx(-min(ratio * adv, min(max(ratio, 0.8), 1.2) * adv))
    out.loss.backward()
    assert float(lp.grad) == pytest.approx(grad)


def test_clip_higher_is_asymmetric():
    ones = torch.ones(1, 2, dtype=torch.float64)
    lp = torch.tensor([[math.log(1.25), math.log(0.75)]], dtype=torch.float64, requires_grad=True)
    for eps_high, grad_pos in [(0.2, 0.0), (0.28, -1.25)]:  # DAPO's 0.28 lets r = 1.25 still learn
        lp.grad = None
        adv = torch.tensor([[1.0, -1.0]], dtype=torch.float64)  # per-token advantages
        out = policy_loss(lp, torch.zeros(1, 2, dtype=torch.float64), adv, ones, epsilon_low=0.2,
                          epsilon_high=eps_high, aggregation="token_mean")
        out.loss.backward()
        assert float(lp.grad[0, 0]) == pytest.approx(grad_pos)
        assert float(lp.grad[0, 1]) == 0.0  # r = 0.75 < 0.8 with Â < 0: floored for both
        assert frac(out.metrics["clip_ratio/high"]) == (0.5 if eps_high == 0.2 else 0.0)
        assert frac(out.metrics["clip_ratio/low"]) == 0.5


def test_delta_bounds_negative_advantages():
    lp = torch.tensor([[math.log(3.0), math.log(1.5)]], dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([[-1.0, -1.0]], dtype=torch.float64)
    out = policy_loss(lp, torch.zeros_like(lp), adv, torch.ones_like(lp), delta=2.0, aggregation="token_mean")
    assert num(out.loss) == pytest.approx(2.0 + 1.5)  # r = 3 counted as δ = 2
    out.loss.backward()
    assert lp.grad[0].tolist() == pytest.approx([0.0, 1.5])
    with pytest.raises(ValueError, match="delta"):
        policy_loss(lp, torch.zeros_like(lp), adv, torch.ones_like(lp), delta=1.1)


def test_sequence_level_ratio():
    lp = logps_for(RATIOS)
    out = policy_loss(lp, OLD, ADV, MASK, ratio_level="sequence", aggregation="grpo")
    s0 = (1.1 * 1.5 * 0.7) ** (1 / 3)  # geometric mean of the token ratios, inside [0.8, 1.2]
    s1 = (0.7 * 1.5) ** (1 / 2)  # padding's r = 9 is ignored
    assert num(out.loss) == pytest.approx(-s0 * 1.0 + s1 * 0.5)
    out.loss.backward()
    # ∂(−s Â)/∂logp_t = −Â s / |o|, the same for every token of the sequence
    expected = [[-s0 / 3] * 3, [0.5 * s1 / 2] * 2 + [0.0]]
    torch.testing.assert_close(lp.grad, torch.tensor(expected, dtype=torch.float64))
    assert frac(out.metrics["ratio/mean"]) == pytest.approx((3 * s0 + 2 * s1) / 5)
    # token_mean weights each sequence's loss by its length (TRL's warning for bnpo/dapo + sequence)
    tok = policy_loss(lp, OLD, ADV, MASK, ratio_level="sequence", aggregation="token_mean")
    assert mean_loss(tok) == pytest.approx((3 * -s0 + 2 * 0.5 * s1) / 5)


def test_sequence_ratio_clips_whole_sequence():
    old = torch.zeros(1, 2, dtype=torch.float64)
    lp = torch.tensor([[math.log(2.0), math.log(1.0)]], dtype=torch.float64, requires_grad=True)  # s = √2 > 1.2
    out = policy_loss(lp, old, torch.tensor([1.0], dtype=torch.float64), torch.ones_like(old), ratio_level="sequence")
    assert num(out.loss) == pytest.approx(-1.2)
    out.loss.backward()
    assert lp.grad.tolist() == [[0.0, 0.0]]
    assert frac(out.metrics["clip_ratio/high"]) == 1.0


def test_sequence_product_ratio_is_the_joint_probability_ratio():
    """Seed 002 L377-385 (DeepSeek-R1 eq. 1-3): ρ_i = π_θ(o_i|q)/π_old(o_i|q), the product of the token
    ratios, clipped once per sequence; with aggregation "grpo" the loss is (1/G) Σ_i −min(ρ Â, clip(ρ) Â)."""
    small = [[1.05, 1.1, 0.9], [0.95, 1.02, 9.0]]  # ρ_0 = 1.0395, ρ_1 = 0.969 (padding's 9 ignored)
    lp = logps_for(small)
    out = policy_loss(lp, OLD, ADV, MASK, ratio_level="sequence_product", aggregation="grpo")
    rho0, rho1 = 1.05 * 1.1 * 0.9, 0.95 * 1.02
    assert num(out.loss) == pytest.approx(-rho0 * 1.0 + rho1 * 0.5)
    assert out.weight == 2.0
    out.loss.backward()
    # the sequence's term is −ρ Â whatever |o_i| (its |o_i| equal tokens are averaged), and
    # ∂(−ρ Â)/∂logp_t = −Â ρ for every token t (ρ = exp Σ_t log r_t): no 1/|o_i|, unlike GSPO's ratio
    expected = [[-rho0] * 3, [0.5 * rho1] * 2 + [0.0]]
    torch.testing.assert_close(lp.grad, torch.tensor(expected, dtype=torch.float64))
    # RATIOS give ρ_0 = 1.155 (inside the clip range) and ρ_1 = 1.05: the product, not the geometric mean
    big = policy_loss(logps_for(RATIOS), OLD, ADV, MASK, ratio_level="sequence_product", aggregation="grpo")
    assert num(big.loss) == pytest.approx(-(1.1 * 1.5 * 0.7) + 0.5 * (0.7 * 1.5))
    clipped = policy_loss(logps_for([[1.5, 1.5, 1.0], [1.0, 1.0, 1.0]]), OLD, ADV, MASK, ratio_level="sequence_product")
    assert num(clipped.loss) == pytest.approx(-1.2 + 0.5 * 1.0)  # ρ_0 = 2.25 capped at 1 + ε for Â > 0


def test_entropy_bonus_is_subtracted_per_token_and_aggregated_like_the_loss():
    """−β_H·H per token (seed 003 L1260-1268): with "grpo" aggregation the loss moves by
    −β_H (1/G) Σ_i (1/|o_i|) Σ_t H_{i,t}; the gradient reaches the entropy; padding is ignored."""
    lp = logps_for(RATIOS)
    entropy = torch.tensor([[1.0, 2.0, 3.0], [0.5, 1.5, 100.0]], dtype=torch.float64, requires_grad=True)
    base = policy_loss(lp, OLD, ADV, MASK, aggregation="grpo")
    with_bonus = policy_loss(lp, OLD, ADV, MASK, aggregation="grpo", entropy=entropy, entropy_coef=0.1)
    assert num(with_bonus.loss) - num(base.loss) == pytest.approx(-0.1 * ((1 + 2 + 3) / 3 + (0.5 + 1.5) / 2))
    with_bonus.loss.backward()
    torch.testing.assert_close(entropy.grad, torch.tensor([[-0.1 / 3] * 3, [-0.1 / 2] * 2 + [0.0]], dtype=torch.float64))
    tok = policy_loss(lp, OLD, ADV, MASK, aggregation="token_mean", entropy=entropy, entropy_coef=0.1)
    tok_base = policy_loss(lp, OLD, ADV, MASK, aggregation="token_mean")
    assert mean_loss(tok) - mean_loss(tok_base) == pytest.approx(-0.1 * (1 + 2 + 3 + 0.5 + 1.5) / 5)
    with pytest.raises(ValueError, match="needs entropy"):
        policy_loss(lp, OLD, ADV, MASK, entropy_coef=0.1)
    with pytest.raises(ValueError, match="entropy_coef must be >= 0"):
        policy_loss(lp, OLD, ADV, MASK, entropy=entropy, entropy_coef=-1.0)


def test_kl_estimators_values_and_gradients():
    lp = torch.tensor([[-1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[-1.0 + math.log(2.0), -2.5]], dtype=torch.float64)  # ref − logp = log 2, −0.5
    k3 = [2.0 - math.log(2.0) - 1.0, math.exp(-0.5) + 0.5 - 1.0]
    k1 = [-math.log(2.0), 0.5]
    assert kl_per_token(lp, ref, "k3").tolist()[0] == pytest.approx(k3)
    assert kl_per_token(lp, ref, "k1").tolist()[0] == pytest.approx(k1)
    adv = torch.zeros(1, dtype=torch.float64)  # isolate the KL term
    ones = torch.ones_like(lp)
    for est, values, grads in [("k3", k3, [1 - 2.0, 1 - math.exp(-0.5)]), ("k1", k1, [1.0, 1.0])]:
        lp.grad = None
        out = policy_loss(lp, lp.detach(), adv, ones, ref_logps=ref, beta=0.1, kl_estimator=est, aggregation="token_mean")
        assert num(out.loss) == pytest.approx(0.1 * sum(values))
        assert frac(out.metrics["kl"]) == pytest.approx(sum(values) / 2)
        out.loss.backward()
        assert lp.grad.tolist()[0] == pytest.approx([0.1 * g for g in grads])


def test_kl_importance_weight():
    """r·KL: on-policy the same value, but the gradient gains KL·r per token (∂r/∂logp = r)."""
    lp = torch.tensor([[-1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[-1.0 + math.log(2.0), -2.5]], dtype=torch.float64)
    k3 = kl_per_token(lp.detach(), ref)
    adv, ones = torch.zeros(1, dtype=torch.float64), torch.ones_like(lp)
    for old_shift in (0.0, 0.1):  # on-policy, then r = exp(0.1)
        lp.grad = None
        r = math.exp(old_shift)
        out = policy_loss(lp, lp.detach() - old_shift, adv, ones, ref_logps=ref, beta=0.1,
                          kl_importance_weight=True, aggregation="token_mean")
        assert num(out.loss) == pytest.approx(0.1 * r * float(k3.sum()))
        assert frac(out.metrics["kl"]) == pytest.approx(float(k3.mean()))  # the metric is unweighted
        out.loss.backward()
        plain_grad = torch.tensor([1 - 2.0, 1 - math.exp(-0.5)], dtype=torch.float64)
        torch.testing.assert_close(lp.grad[0], 0.1 * r * (plain_grad + k3[0]))


def test_kl_added_per_token_before_aggregation():
    lp = logps_for(RATIOS)
    ref = OLD - 0.3
    out = policy_loss(lp, OLD, ADV, MASK, ref_logps=ref, beta=0.04, aggregation="grpo")
    d = (ref - lp.detach())
    kl = (d.exp() - d - 1) * MASK
    expected = -1.0 + 0.575 + 0.04 * (kl[0].sum() / 3 + kl[1].sum() / 2)
    assert num(out.loss) == pytest.approx(float(expected))


def test_beta_zero_never_needs_ref():
    lp = logps_for(RATIOS)
    plain = policy_loss(lp, OLD, ADV, MASK, ref_logps=None, beta=0.0)
    ref = (OLD - 1.0).requires_grad_(True)
    measured = policy_loss(lp, OLD, ADV, MASK, ref_logps=ref, beta=0.0)
    assert num(plain.loss) == num(measured.loss)
    assert "kl" in measured.metrics and "kl" not in plain.metrics
    measured.loss.backward()
    assert ref.grad is None  # the reference is never part of the graph
    with pytest.raises(ValueError, match="ref_logps"):
        policy_loss(lp, OLD, ADV, MASK, beta=0.04)


def test_masked_positions_are_ignored_even_when_garbage():
    lp = logps_for(RATIOS)
    dirty_lp = lp.detach().clone()
    dirty_lp[1, 2] = float("nan")
    dirty_lp.requires_grad_(True)
    dirty_old, dirty_ref = OLD.clone(), OLD.clone() - 0.2
    dirty_old[1, 2], dirty_ref[1, 2] = float("-inf"), float("inf")
    for level in ("token", "sequence"):
        for agg in ("grpo", "token_mean", "dr_grpo"):
            kw = dict(ratio_level=level, aggregation=agg, max_completion_length=3, beta=0.1)
            clean = policy_loss(lp, OLD, ADV, MASK, ref_logps=OLD - 0.2, **kw)
            dirty = policy_loss(dirty_lp, dirty_old, ADV, MASK, ref_logps=dirty_ref, **kw)
            assert num(dirty.loss) == pytest.approx(num(clean.loss))
            for k in clean.metrics:
                assert frac(dirty.metrics[k]) == pytest.approx(frac(clean.metrics[k]))
            dirty_lp.grad = None
            dirty.loss.backward()
            assert torch.isfinite(dirty_lp.grad).all() and float(dirty_lp.grad[1, 2]) == 0.0


def test_empty_sequence_counts_but_adds_nothing():
    lp = logps_for(RATIOS)
    mask = MASK.clone()
    mask[1] = 0.0
    out = policy_loss(lp, OLD, ADV, mask, aggregation="grpo")
    assert num(out.loss) == pytest.approx(-1.0) and out.weight == 2.0  # as TRL: the mean is over all rows


def test_per_token_advantages():
    lp = logps_for(RATIOS)
    broadcast = policy_loss(lp, OLD, ADV[:, None].expand(2, 3), MASK, aggregation="token_mean")
    assert num(broadcast.loss) == pytest.approx(-1.85)
    adv = torch.tensor([[1.0, -1.0, 0.0], [2.0, 0.5, float("nan")]], dtype=torch.float64)  # nan: padding
    out = policy_loss(lp, OLD, adv, MASK, aggregation="token_mean")
    # 1.1·1 -> −1.1; 1.5·(−1) unclipped -> +1.5; 0; 0.7·2 -> −1.4 (no floor for Â > 0); 1.5 capped 1.2·0.5 -> −0.6
    assert num(out.loss) == pytest.approx(-1.1 + 1.5 + 0.0 - 1.4 - 0.6)


@pytest.mark.parametrize("aggregation", ["grpo", "token_mean", "dr_grpo"])
@pytest.mark.parametrize("level", ["token", "sequence"])
def test_micro_batches_add_up_to_the_batch(aggregation, level):
    """Σ loss / Σ weight over micro-batches (what the loop does) equals the whole batch's loss."""
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(6, 5, generator=g, dtype=torch.float64) - 2
    old = lp + 0.3 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    ref = lp + 0.3 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    mask = (torch.arange(5)[None, :] < torch.tensor([5, 2, 4, 1, 3, 5])[:, None]).double()
    adv = torch.randn(6, generator=g, dtype=torch.float64)
    kw = dict(ref_logps=ref, beta=0.04, aggregation=aggregation, ratio_level=level, max_completion_length=5)
    whole = policy_loss(lp, old, adv, mask, **{**kw, "ref_logps": ref})
    parts = [policy_loss(lp[s], old[s], adv[s], mask[s], **{**kw, "ref_logps": ref[s]}) for s in (slice(0, 2), slice(2, 6))]
    assert sum(num(p.loss) for p in parts) / sum(p.weight for p in parts) == pytest.approx(mean_loss(whole))


def test_on_policy_loss_is_zero_but_gradient_is_not():
    """μ = 1, β = 0: r = 1, group-normalised advantages average to 0 -> loss 0, gradient −Â_i/(|o_i| G)."""
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)  # one group of G = 4
    adv = (rewards - rewards.mean()) / rewards.std()
    lp = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, -3.0, -1.0], [-2.0, -0.2, -1.0], [-0.7, -0.7, -0.7]],
                      dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.float64)
    out = policy_loss(lp, lp.detach(), adv, mask, aggregation="grpo")
    assert mean_loss(out) == pytest.approx(0.0, abs=1e-12)
    assert frac(out.metrics["ratio/mean"]) == 1.0 and frac(out.metrics["clip_ratio/region"]) == 0.0
    (out.loss / out.weight).backward()
    expected = -adv[:, None] / mask.sum(-1, keepdim=True) / 4 * mask
    torch.testing.assert_close(lp.grad, expected)
    assert lp.grad.abs().sum() > 0.5


def test_bf16_inputs_computed_in_fp32():
    lp = logps_for(RATIOS).detach().to(torch.bfloat16).requires_grad_(True)
    out = policy_loss(lp, OLD.to(torch.bfloat16), ADV.to(torch.bfloat16), MASK.to(torch.bfloat16))
    assert out.loss.dtype == torch.float32
    out.loss.backward()
    assert lp.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("kwargs,match", [
    (dict(aggregation="seq_mean"), "aggregation"), (dict(ratio_level="group"), "ratio_level"),
    (dict(kl_estimator="k2"), "kl_estimator"), (dict(aggregation="dr_grpo"), "max_completion_length"),
    (dict(epsilon_low=-0.1), "epsilon"), (dict(beta=-1.0), "beta"),
])
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        policy_loss(logps_for(RATIOS), OLD, ADV, MASK, **kwargs)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(logps_for(RATIOS), OLD, ADV[:1], MASK)
    with pytest.raises(ValueError, match="mask"):
        policy_loss(logps_for(RATIOS), OLD, ADV, MASK[:, :2])


def test_soft_overlong_penalty():
    # DAPO's L_max = 20480, L_cache = 4096: free up to 16384, linear to −1 at 20480, −1 beyond
    lengths = torch.tensor([0, 16384, 16385, 18432, 20480, 20481, 30000])
    expected = [0.0, 0.0, -1 / 4096, -0.5, -1.0, -1.0, -1.0]
    assert soft_overlong_penalty(lengths, 20480, 4096).tolist() == pytest.approx(expected)
    assert soft_overlong_penalty(torch.tensor([3, 4, 5]), 4, 4).tolist() == pytest.approx([-0.75, -1.0, -1.0])
    with pytest.raises(ValueError, match="cache"):
        soft_overlong_penalty(lengths, 100, 0)


def test_tis_weights_scale_each_tokens_surrogate():
    """Truncated importance sampling: each token's clipped surrogate times its (capped, detached) weight."""
    weights = torch.tensor([[0.5, 1.0, 2.0], [1.0, 0.25, 7.0]], dtype=torch.float64)  # 7.0 sits on padding
    logps = logps_for(RATIOS)
    out = policy_loss(logps, OLD, ADV, MASK, aggregation="token_mean", tis_weights=weights)
    want = 0.5 * -1.1 + 1.0 * -1.2 + 2.0 * -0.7 + 1.0 * 0.4 + 0.25 * 0.75
    assert num(out.loss) == pytest.approx(want) and out.weight == 5
    out.loss.backward()
    plain = logps_for(RATIOS)
    policy_loss(plain, OLD, ADV, MASK, aggregation="token_mean").loss.backward()
    torch.testing.assert_close(logps.grad, plain.grad * weights * MASK)  # the weight scales the gradient too
    with pytest.raises(ValueError, match="tis_weights must be"):
        policy_loss(logps_for(RATIOS), OLD, ADV, MASK, tis_weights=weights[:, :2])
