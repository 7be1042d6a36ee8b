"""PPO pieces (posttrain.losses.ppo): KL estimators, the KL-penalised token reward, the value loss,
explained variance, entropy and the KL controllers, against hand-computed values and closed forms.

TRL 1.16 has no PPO trainer (its PPOTrainer, value loss and AdaptiveKLController were removed), so
these are tested against their equations; `entropy_from_logits` is also compared with TRL's
`trl.trainer.utils.entropy_from_logits`, which still exists.
"""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.losses.ppo import (AdaptiveKLController, FixedKLController, entropy_from_logits, entropy_of_log_probs,
                                  explained_variance, kl_estimate, kl_penalized_rewards, last_token_index, value_loss)

# ---------------------------------------------------------------- KL estimators

LOGPS = torch.tensor([[-1.0, -2.0, 0.0]])
REF = torch.tensor([[-2.0, -1.0, 1000.0]])  # the third column is padding with a garbage log-prob
MASK = torch.tensor([[1, 1, 0]])


def test_kl_estimators_hand_values():
    # log π − log π_ref = [1, −1]
    assert kl_estimate(LOGPS, REF, MASK, "k1").tolist() == [[1.0, -1.0, 0.0]]
    assert kl_estimate(LOGPS, REF, MASK, "k2").tolist() == [[0.5, 0.5, 0.0]]  # ½·1²
    # k3 = e^{ref−logp} − (ref − logp) − 1: e^{−1} + 1 − 1 = 0.367879;  e^{1} − 1 − 1 = 0.718282
    k3 = kl_estimate(LOGPS, REF, MASK, "k3")
    assert k3.tolist()[0] == pytest.approx([math.exp(-1), math.e - 2, 0.0], abs=1e-6)
    assert not torch.isnan(k3).any() and not torch.isinf(k3).any()  # e^{1000} on the padding is never used


def test_kl_estimators_are_unbiased_on_samples():
    # tokens drawn from π: E[k1] = E[k3] = KL(π‖π_ref); k3 ≥ 0 everywhere
    torch.manual_seed(0)
    logp = torch.log_softmax(torch.tensor([2.0, 0.0, -1.0, 0.5]), -1)
    ref = torch.log_softmax(torch.tensor([0.0, 1.0, 0.0, 0.0]), -1)
    exact = float((logp.exp() * (logp - ref)).sum())  # 0.863… nats
    idx = torch.multinomial(logp.exp(), 200_000, replacement=True).view(1, -1)
    m = torch.ones_like(idx)
    k1, k3 = kl_estimate(logp[idx], ref[idx], m, "k1"), kl_estimate(logp[idx], ref[idx], m, "k3")
    assert float(k1.mean()) == pytest.approx(exact, abs=0.01)
    assert float(k3.mean()) == pytest.approx(exact, abs=0.01)
    assert (k3 >= 0).all()


def test_kl_estimate_gradient_and_errors():
    logps = LOGPS.clone().requires_grad_()
    kl_estimate(logps, REF, MASK, "k3").sum().backward()
    # d k3 / d logp = −e^{ref−logp} + 1: 1 − e^{−1}, 1 − e
    assert logps.grad.tolist()[0] == pytest.approx([1 - math.exp(-1), 1 - math.e, 0.0], abs=1e-6)
    with pytest.raises(ValueError, match=r"estimator must be one of \('k1', 'k2', 'k3'\), got 'k4'"):
        kl_estimate(LOGPS, REF, MASK, "k4")
    with pytest.raises(ValueError, match=r"ref_logps has shape \(1, 2\) but mask has shape \(1, 3\)"):
        kl_estimate(LOGPS, REF[:, :2], MASK, "k1")


# ---------------------------------------------------------------- KL-penalised rewards

def test_last_token_index():
    assert last_token_index(torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1]])).tolist() == [1, 3, 3]
    with pytest.raises(ValueError, match=r"rows \[1\] have no valid token"):
        last_token_index(torch.tensor([[1, 0], [0, 0]]))


def test_kl_penalized_rewards_every_token():
    logps = torch.tensor([[-1.0, -1.0, -1.0, 0.0], [-0.5, -0.5, -3.0, -3.0]])
    ref = torch.tensor([[-1.5, -0.5, -1.0, 9.0], [-1.0, -1.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    scores = torch.tensor([2.0, -1.0])
    # k1 row 0 = [0.5, −0.5, 0, pad], row 1 = [0.5, 0.5, −2, −2]; β = 0.1
    # row 0: [−0.05, 0.05, 0 + 2, 0];  row 1: [−0.05, −0.05, 0.2, 0.2 − 1]
    out = kl_penalized_rewards(scores, logps, ref, mask, kl_coef=0.1)
    assert out.tolist()[0] == pytest.approx([-0.05, 0.05, 2.0, 0.0], abs=1e-6)
    assert out.tolist()[1] == pytest.approx([-0.05, -0.05, 0.2, -0.8], abs=1e-6)
    # "last": score − β Σ kl at the last token: 2 − 0.1·0 = 2;  −1 − 0.1·(−3) = −0.7
    last = kl_penalized_rewards(scores, logps, ref, mask, kl_coef=0.1, placement="last")
    assert last.tolist()[0] == pytest.approx([0, 0, 2.0, 0], abs=1e-6)
    assert last.tolist()[1] == pytest.approx([0, 0, 0, -0.7], abs=1e-6)
    # both carry the sequence-level augmented reward r − β log π(y)/π_ref(y) in total (S3 L1192)
    assert torch.allclose(out.sum(1), last.sum(1), atol=1e-6)


def test_kl_penalized_rewards_no_grad_and_errors():
    logps = torch.zeros(2, 3, requires_grad=True)
    out = kl_penalized_rewards(torch.ones(2), logps, torch.zeros(2, 3), torch.ones(2, 3), 0.05)
    assert not out.requires_grad
    with pytest.raises(ValueError, match=r"scores must be \(B,\) = \(2,\), got shape \(3,\)"):
        kl_penalized_rewards(torch.ones(3), logps, torch.zeros(2, 3), torch.ones(2, 3), 0.05)
    with pytest.raises(ValueError, match="placement must be one of"):
        kl_penalized_rewards(torch.ones(2), logps, torch.zeros(2, 3), torch.ones(2, 3), 0.05, placement="first")
    with pytest.raises(ValueError, match="have no valid token"):
        kl_penalized_rewards(torch.ones(2), logps, torch.zeros(2, 3), torch.tensor([[1, 1, 0], [0, 0, 0]]), 0.05)


def test_kl_penalized_rewards_feed_gae_bandit_form():
    # with γ = λ = 1 and placement="last", GAE gives A_t = (score − β Σ kl) − V_t (S3 L1270-1281)
    from posttrain.losses.advantages import gae

    logps, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])  # kl = [0.5, −1], Σ = −0.5
    rewards = kl_penalized_rewards(torch.tensor([1.0]), logps, ref, torch.ones(1, 2), 0.2, placement="last")
    adv, _ = gae(rewards, torch.tensor([[0.3, 0.6]]), torch.ones(1, 2), 1.0, 1.0)
    assert adv.tolist()[0] == pytest.approx([1.1 - 0.3, 1.1 - 0.6], abs=1e-6)  # 1 − 0.2·(−0.5) = 1.1


# ---------------------------------------------------------------- value loss

def test_value_loss_unclipped_hand_values():
    values, returns = torch.tensor([[1.0, 2.0, 50.0]]), torch.zeros(1, 3)
    loss, clip = value_loss(values, values, returns, torch.tensor([[1, 1, 0]]), clip_range=None)
    assert float(loss) == pytest.approx(0.5 * (1 + 4))  # the padded 50 is ignored
    assert float(clip) == 0


def test_value_loss_clipped_hand_values_and_gradient():
    values = torch.tensor([[1.0, 2.0, 0.0]], requires_grad=True)
    old = torch.tensor([[0.5, 2.5, 0.0]])
    returns = torch.zeros(1, 3)
    mask = torch.tensor([[1, 1, 0]])
    # c = 0.2: V_clip = [0.5 + 0.2, 2.5 − 0.2] = [0.7, 2.3]
    # (V − R)² = [1, 4], (V_clip − R)² = [0.49, 5.29] → max = [1, 5.29] → ½·6.29 = 3.145
    loss, clip = value_loss(values, old, returns, mask, clip_range=0.2)
    assert float(loss.detach()) == pytest.approx(3.145, abs=1e-5)
    assert float(clip) == 1  # token 1: the clipped term is larger
    loss.backward()
    # token 0: d ½(V − R)² = V − R = 1; token 1: V_clip is constant in V (clamp active) → 0
    assert values.grad.tolist() == [[1.0, 0.0, 0.0]]


def test_value_loss_large_clip_equals_unclipped():
    g = torch.Generator().manual_seed(0)
    v, old, r = (torch.randn(3, 5, generator=g) for _ in range(3))
    m = (torch.rand(3, 5, generator=g) > 0.3).long()
    clipped, frac = value_loss(v, old, r, m, clip_range=100.0)
    plain, _ = value_loss(v, old, r, m, None)
    assert torch.allclose(clipped, plain) and float(frac) == 0
    assert float(plain) == pytest.approx(float(0.5 * (((v - r) ** 2) * m).sum()), abs=1e-5)


# ---------------------------------------------------------------- explained variance

def test_explained_variance():
    m = torch.tensor([[1, 1, 1, 0]])
    returns = torch.tensor([[1.0, 2.0, 3.0, 99.0]])
    # R − V = [0, 0, 1]: Var = 2/9; Var[R] = 2/3 → 1 − 1/3 = 2/3
    assert explained_variance(torch.tensor([[1.0, 2.0, 2.0, 0.0]]), returns, m) == pytest.approx(2 / 3)
    assert explained_variance(returns, returns, m) == pytest.approx(1.0)
    assert explained_variance(torch.full((1, 4), 2.0), returns, m) == pytest.approx(0.0)  # the mean: no better
    assert math.isnan(explained_variance(returns, torch.ones(1, 4), m))  # constant returns
    assert math.isnan(explained_variance(returns, returns, torch.zeros(1, 4)))


# ---------------------------------------------------------------- entropy

def test_entropy_hand_values():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, -math.inf, 0.0, -math.inf], [1e4, 0.0, 0.0, 0.0]])
    # uniform over 4 → log 4; uniform over 2 (−inf masked) → log 2; one dominant logit → 0
    assert entropy_from_logits(logits).tolist() == pytest.approx([math.log(4), math.log(2), 0.0], abs=1e-6)
    # p = softmax([log 3, 0]) = [3/4, 1/4]: H = −(¾ log ¾ + ¼ log ¼) = 0.562335
    assert float(entropy_from_logits(torch.tensor([math.log(3), 0.0]))) == pytest.approx(0.562335, abs=1e-6)


def test_entropy_shape_dtype_chunks_gradient():
    torch.manual_seed(0)
    logits = (torch.randn(3, 5, 11) * 3).to(torch.bfloat16)
    out = entropy_from_logits(logits)
    assert out.shape == (3, 5) and out.dtype == torch.float32
    assert torch.allclose(entropy_from_logits(logits, chunk_size=4), out)
    x = torch.randn(2, 7, requires_grad=True)
    entropy_from_logits(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_entropy_of_log_probs_is_entropy_from_logits_on_the_same_log_softmax():
    torch.manual_seed(2)
    logits = torch.cat([torch.randn(5, 30) * 4, torch.tensor([[0.0, -math.inf] * 15])])
    log_probs = torch.log_softmax(logits, -1)
    assert torch.equal(entropy_of_log_probs(log_probs), entropy_from_logits(logits))  # bit for bit, 0·log 0 = 0
    # the inline form it replaced, −Σ p log p, where no probability underflows to 0
    assert torch.equal(entropy_of_log_probs(log_probs[:5]), -(log_probs[:5].exp() * log_probs[:5]).sum(-1))


def test_entropy_equals_trl():
    utils = pytest.importorskip("trl.trainer.utils")
    torch.manual_seed(1)
    logits = torch.randn(4, 6, 50) * 2
    assert torch.allclose(entropy_from_logits(logits), utils.entropy_from_logits(logits), atol=1e-5)


# ---------------------------------------------------------------- KL controllers

def test_adaptive_kl_proportional_hand_values():
    c = AdaptiveKLController(0.1, target_kl=6.0, horizon=10000)
    # KL 9: error 9/6 − 1 = 0.5 → clipped to 0.2; β ← 0.1 · (1 + 0.2 · 256/10000) = 0.100512
    assert c.update(9.0, 256) == pytest.approx(0.100512, rel=1e-12)
    c = AdaptiveKLController(0.1, 6.0, 10000)
    # KL 6.6: error 0.1 → 0.1 · (1 + 0.1 · 0.0256) = 0.1002560
    assert c.update(6.6, 256) == pytest.approx(0.100256, rel=1e-12)
    # KL 0: error −1 → −0.2 → 0.100256 · (1 − 0.00512)
    assert c.update(0.0, 256) == pytest.approx(0.100256 * (1 - 0.00512), rel=1e-12)
    assert c.update(6.0, 256) == pytest.approx(0.100256 * (1 - 0.00512), rel=1e-12)  # on target: unchanged


def test_adaptive_kl_double_halve():
    c = AdaptiveKLController(0.1, target_kl=0.01, mode="double_halve")
    assert c.update(0.02, 1) == pytest.approx(0.2)  # 0.02 > 1.5·0.01 → 2β
    assert c.update(0.012, 1) == pytest.approx(0.2)  # inside [0.00667, 0.015]: unchanged
    assert c.update(0.005, 1) == pytest.approx(0.1)  # 0.005 < 0.01/1.5 → β/2
    assert c.update(0.015, 1) == pytest.approx(0.1)  # the boundary itself is inside


def test_kl_controller_resume_is_exact():
    kls = [0.3, 5.0, 0.01, 2.0, 1.2, 0.0, 9.0]
    for mode in ["proportional", "double_halve"]:
        whole = AdaptiveKLController(0.05, 1.0, horizon=100, mode=mode)
        full = [whole.update(k, 32) for k in kls]
        first = AdaptiveKLController(0.05, 1.0, horizon=100, mode=mode)
        for k in kls[:3]:
            first.update(k, 32)
        resumed = AdaptiveKLController(0.05, 1.0, horizon=100, mode=mode)  # fresh object, e.g. after a restart
        resumed.load_state_dict(first.state_dict())
        assert [resumed.update(k, 32) for k in kls[3:]] == full[3:]  # bit-for-bit


def test_fixed_kl_and_errors():
    f = FixedKLController(0.02)
    assert f.update(100.0, 8) == 0.02 and f.value == 0.02
    g = FixedKLController(0.5)
    g.load_state_dict(f.state_dict())
    assert g.value == 0.02
    with pytest.raises(ValueError, match=r"mode must be one of \('proportional', 'double_halve'\)"):
        AdaptiveKLController(0.1, 1.0, mode="pid")
    with pytest.raises(ValueError, match="target_kl must be > 0"):
        AdaptiveKLController(0.1, 0.0)
    with pytest.raises(ValueError, match="horizon must be > 0"):
        AdaptiveKLController(0.1, 1.0, horizon=0)
