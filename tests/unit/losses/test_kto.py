"""KTO pure parts: the loss on hand-computed values, the KL reference point (no gradient, clamped,
averaged over processes), the class-balance warning and the config's checks."""

import math

import pytest
import torch

from posttrain.algorithms.kto import KTOConfig, balance_warning
from posttrain.config import build_config
from posttrain.errors import ConfigError
from posttrain.losses.kto import balance_ratio, kto_loss, kto_reference_point


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_loss_hand_computed():
    # r = policy - ref = [0.5, -1.0, 0.0]; beta 0.5, z0 0.2, lambda_D 2, lambda_U 1
    policy = torch.tensor([-1.0, -2.0, -3.0])
    ref = torch.tensor([-1.5, -1.0, -3.0])
    desirable = torch.tensor([True, False, True])
    losses, rewards = kto_loss(policy, ref, desirable, 0.2, beta=0.5, desirable_weight=2.0, undesirable_weight=1.0)
    # desirable: 2 - 2 sigma(0.5 (0.5 - 0.2)) = 2 - 2 sigma(0.15); undesirable: 1 - sigma(0.5 (0.2 + 1)) = 1 - sigma(0.6);
    # desirable: 2 - 2 sigma(0.5 (0 - 0.2)) = 2 - 2 sigma(-0.1)
    expected = [2 - 2 * 0.5374298453437496, 1 - 0.6456563062257954, 2 - 2 * 0.47502081252106]
    assert expected == pytest.approx([2 - 2 * sigmoid(0.15), 1 - sigmoid(0.6), 2 - 2 * sigmoid(-0.1)], abs=1e-12)
    torch.testing.assert_close(losses, torch.tensor(expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(rewards, torch.tensor([0.25, -0.5, 0.0]))
    assert float(losses.mean()) == pytest.approx(sum(expected) / 3, abs=1e-6)


def test_loss_gradient_is_analytic_and_never_reaches_the_reference_point():
    policy = torch.tensor([-1.0, -2.0], requires_grad=True)
    kl = torch.tensor(0.3, requires_grad=True)  # even a z0 that tracks gradients is cut off
    losses, _ = kto_loss(policy, torch.tensor([-1.2, -2.5]), torch.tensor([True, False]), kl, beta=0.1)
    losses.sum().backward()
    # d/dr [1 - sigma(b(r - z))] = -b s(1 - s) with s = sigma(b(r - z)); d/dr [1 - sigma(b(z - r))] = +b s'(1 - s')
    s0, s1 = sigmoid(0.1 * (0.2 - 0.3)), sigmoid(0.1 * (0.3 - 0.5))
    torch.testing.assert_close(policy.grad, torch.tensor([-0.1 * s0 * (1 - s0), 0.1 * s1 * (1 - s1)]))
    assert kl.grad is None


def test_apo_zero_unpaired_is_kto_with_reference_point_zero():
    policy, ref, labels = torch.tensor([-1.0, -2.0]), torch.tensor([-1.4, -1.0]), torch.tensor([True, False])
    losses, _ = kto_loss(policy, ref, labels, kl=5.0, beta=0.5, loss_type="apo_zero_unpaired")
    torch.testing.assert_close(losses, torch.tensor([1 - sigmoid(0.2), sigmoid(-0.5)]))
    torch.testing.assert_close(losses, kto_loss(policy, ref, labels, kl=0.0, beta=0.5)[0])


def test_reference_point_mean_clamped_detached_and_reduced():
    policy_kl = torch.tensor([-1.0, -2.0], requires_grad=True)
    z0 = kto_reference_point(policy_kl, torch.tensor([-1.5, -1.9]))  # diffs 0.5, -0.1
    assert float(z0) == pytest.approx(0.2, abs=1e-6) and not z0.requires_grad
    assert float(kto_reference_point(torch.tensor([-2.0]), torch.tensor([-1.0]))) == 0.0  # clamped at 0
    # another process holding diffs summing to 1.0 over 2 pairs: (0.4 + 1.0) / 4
    other_rank = lambda values: [values[0] + 1.0, values[1] + 2.0]  # noqa: E731
    assert float(kto_reference_point(policy_kl, torch.tensor([-1.5, -1.9]), other_rank)) == pytest.approx(0.35, abs=1e-6)


def test_balance_ratio_and_warning(tmp_path):
    assert balance_ratio(3, 1) == 3.0 and balance_ratio(3, 3, 1.2, 1.0) == pytest.approx(1.2)
    assert balance_ratio(2, 0) == math.inf
    config = build_config(KTOConfig, {})
    examples = [{"label": True}] * 3 + [{"label": False}]
    text = balance_warning(examples, config)
    # lambda_D in [n_U/n_D, 4/3 n_U/n_D] = [0.333, 0.444]; lambda_U in [n_D/n_U / (4/3), n_D/n_U] = [2.25, 3]
    assert "= 3 (n_D=3, n_U=1)" in text and "[0.333, 0.444]" in text and "[2.25, 3]" in text
    assert balance_warning(examples, build_config(KTOConfig, {"undesirable_weight": 2.5})) is None
    assert balance_warning([{"label": True}, {"label": False}], config) is None


def test_config_rejects_non_positive_beta_and_weights():
    for key in ("beta", "desirable_weight", "undesirable_weight"):
        with pytest.raises(ConfigError, match=f"'{key}' must be > 0"):
            build_config(KTOConfig, {key: 0})
