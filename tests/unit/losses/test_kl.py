"""posttrain.losses.kl: the one registry of per-token KL estimators (k1, k2, k3) and `kl_estimate`.

Here's the maths. With x = log π − log π_ref per token:
    k1 = x,  k2 = x² / 2,  k3 = e^{−x} + x − 1.
For x = [1, −1, 0]: k1 = [1, −1, 0]; k2 = [0.5, 0.5, 0]; k3 = [e^{−1}, e − 2, 0] = [0.367879, 0.718282, 0].
"""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.losses.kl import KL_ESTIMATORS, LOSS_KL_ESTIMATORS, kl_estimate, register_kl_estimator

LOGPS = torch.tensor([[-1.0, -2.0, -3.0]])
REF = torch.tensor([[-2.0, -1.0, -3.0]])


def test_registry_holds_schulmans_three_and_the_loss_subset():
    assert tuple(KL_ESTIMATORS) == ("k1", "k2", "k3")
    assert set(LOSS_KL_ESTIMATORS) <= set(KL_ESTIMATORS)


@pytest.mark.parametrize("estimator, expected", [
    ("k1", [1.0, -1.0, 0.0]),
    ("k2", [0.5, 0.5, 0.0]),
    ("k3", [math.exp(-1), math.e - 2, 0.0]),
])
def test_hand_values(estimator, expected):
    torch.testing.assert_close(kl_estimate(LOGPS, REF, estimator=estimator), torch.tensor([expected]))


def test_mask_zeroes_padding_even_when_it_holds_garbage():
    ref = torch.tensor([[-2.0, -1.0, float("inf")]])
    logps = LOGPS.clone().requires_grad_()
    kl = kl_estimate(logps, ref, torch.tensor([[1, 1, 0]]), "k3")
    kl.sum().backward()
    torch.testing.assert_close(kl, torch.tensor([[math.exp(-1), math.e - 2, 0.0]]))
    # d k3 / d logp = 1 − e^{−x}: 1 − e^{−1}, 1 − e, and nothing through the padding
    torch.testing.assert_close(logps.grad, torch.tensor([[1 - math.exp(-1), 1 - math.e, 0.0]]))


def test_dtype_float64_kept_bf16_computed_in_float32():
    assert kl_estimate(LOGPS.double(), REF.double()).dtype == torch.float64
    assert kl_estimate(LOGPS.bfloat16(), REF.bfloat16(), estimator="k3").dtype == torch.float32


def test_errors_name_the_registered_estimators():
    with pytest.raises(ValueError, match=r"estimator must be one of \('k1', 'k2', 'k3'\), got 'k9'"):
        kl_estimate(LOGPS, REF, estimator="k9")
    with pytest.raises(ValueError, match=r"ref_logps has shape \(1, 2\)"):
        kl_estimate(LOGPS, REF[:, :2], torch.ones(1, 3))


def test_a_registered_estimator_is_usable_at_once():
    @register_kl_estimator("abs_test")
    def absolute(log_ratio):
        return log_ratio.abs()

    try:
        torch.testing.assert_close(kl_estimate(LOGPS, REF, estimator="abs_test"), torch.tensor([[1.0, 1.0, 0.0]]))
    finally:
        del KL_ESTIMATORS["abs_test"]


def test_kl_per_token_is_kl_estimate_without_a_mask():
    from posttrain.losses.kl import kl_per_token

    assert torch.equal(kl_per_token(LOGPS, REF), kl_estimate(LOGPS, REF, estimator="k3"))
    assert torch.equal(kl_per_token(LOGPS, REF, "k1"), kl_estimate(LOGPS, REF, estimator="k1"))
