"""Judge win rate, its interval and AlpacaEval 2's length-controlled win rate against hand values, a
closed form and an independent optimizer."""

import math

import pytest
import torch

from posttrain.methods.win_rate import fit_logistic, length_controlled_win_rate, length_feature, win_rate_summary


def test_win_rate_summary_hand_values():
    # position-swapped verdicts: win (1), tie (0.5, the orders disagreed), loss (0), win; None = unreadable
    out = win_rate_summary([1.0, 0.5, 0.0, 1.0, None])
    assert out["win_rate"] == pytest.approx(2.5 / 4)
    # sample variance: ((3/8)^2 + (1/8)^2 + (5/8)^2 + (3/8)^2) / 3 = (9 + 1 + 25 + 9) / 64 / 3 = 44/192
    stderr = math.sqrt(44 / 192 / 4)
    assert out["win_rate_stderr"] == pytest.approx(stderr)
    assert out["win_rate_ci"] == pytest.approx([0.625 - 1.959964 * stderr, 1.0])  # clipped at 1
    assert (out["wins"], out["ties"], out["losses"], out["unjudged"]) == (2, 1, 1, 1)
    assert math.isnan(win_rate_summary([None])["win_rate"])


def test_length_feature_is_tanh_of_the_standardized_difference():
    # differences 10, -10, 0: mean 0, sample std sqrt(200 / 2) = 10
    assert length_feature([10, -10, 0]) == pytest.approx([math.tanh(1), -math.tanh(1), 0.0])
    assert length_feature([5, 5, 5]) == [0.0, 0.0, 0.0]  # no spread: no length term


def test_lc_win_rate_closed_form_two_length_groups():
    """Longer outputs (Δ = +10) win 3 of 4, shorter ones (Δ = −10) 1 of 2. With the feature taking two
    values ±t, the unpenalized maximum-likelihood fit reproduces each group's mean:
    σ(θ ± φt) = 3/4, 1/2, so θ = (logit 3/4 + logit 1/2) / 2 = ln(3) / 2 and the LC win rate is
    σ(ln 3 / 2) = √3 / (1 + √3) ≈ 0.634, while the raw win rate is 4/6."""
    prefs = [1, 1, 1, 0, 1, 0]
    policy = [20, 20, 20, 20, 0, 0]
    reference = [10, 10, 10, 10, 10, 10]
    out = length_controlled_win_rate(prefs, policy, reference, l2=0.0)
    assert out["lc_win_rate"] == pytest.approx(math.sqrt(3) / (1 + math.sqrt(3)), abs=1e-9)
    t = length_feature([10, 10, 10, 10, -10, -10])[0]
    assert out["length_weight"] == pytest.approx((math.log(3) - 0.0) / 2 / t, abs=1e-9)
    assert win_rate_summary(prefs)["win_rate"] == pytest.approx(4 / 6)


def test_lc_equals_raw_win_rate_when_lengths_do_not_differ_and_all_wins_stay_wins():
    prefs = [1.0, 0.5, 0.0, 1.0, 1.0]
    same = length_controlled_win_rate(prefs, [7] * 5, [3] * 5, l2=0.0)
    assert same["lc_win_rate"] == pytest.approx(0.7, abs=1e-9)  # σ(θ) = mean preference when x ≡ 0
    assert length_controlled_win_rate([1.0, 1.0], [9, 1], [1, 9]) == {"lc_win_rate": 1.0, "length_weight": 0.0}
    assert length_controlled_win_rate([None, 0.0], [1, 1], [2, 2])["lc_win_rate"] == 0.0


def test_penalized_fit_matches_an_independent_optimizer():
    """Soft preferences and a ½·l2·φ² penalty: Newton's (θ, φ) equal L-BFGS's on the same objective."""
    g = torch.Generator().manual_seed(0)
    x = torch.tanh(torch.randn(40, generator=g, dtype=torch.float64))
    p = torch.sigmoid(0.4 + 1.5 * x + 0.5 * torch.randn(40, generator=g, dtype=torch.float64))
    p = torch.where(torch.rand(40, generator=g, dtype=torch.float64) < 0.5, p.round(), p)  # hard and soft labels
    theta, phi = fit_logistic(x.tolist(), p.tolist(), l2=1.0)

    params = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([params], tolerance_grad=1e-12, tolerance_change=1e-15, max_iter=500)

    def closure():
        opt.zero_grad()
        z = params[0] + params[1] * x
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, p, reduction="sum") + 0.5 * params[1] ** 2
        loss.backward()
        return loss

    opt.step(closure)
    assert [theta, phi] == pytest.approx(params.tolist(), abs=1e-6)
    assert phi > 0  # longer outputs were preferred: the length term takes part of the win rate


def test_lc_removes_a_simulated_judges_length_bias():
    """A judge with no quality preference (θ* = 0) but a length bias φ* = 1.5 on tanh(Δ / std Δ), and a
    policy ~100 characters longer than the reference: the raw win rate is inflated (0.62), the LC win
    rate recovers σ(θ*) = ½ and the fit recovers φ*."""
    import random

    rng = random.Random(0)
    policy = [max(1, int(rng.gauss(300, 100))) for _ in range(2000)]
    reference = [max(1, int(rng.gauss(200, 100))) for _ in range(2000)]
    x = length_feature([a - b for a, b in zip(policy, reference)])
    prefs = [float(rng.random() < 1 / (1 + math.exp(-1.5 * xi))) for xi in x]
    lc = length_controlled_win_rate(prefs, policy, reference)
    assert win_rate_summary(prefs)["win_rate"] > 0.6
    assert lc["lc_win_rate"] == pytest.approx(0.5, abs=0.03) and lc["length_weight"] == pytest.approx(1.5, abs=0.15)
