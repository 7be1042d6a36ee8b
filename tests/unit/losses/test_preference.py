"""Preference losses added for the seeds' remaining methods, on hand-computed values (TRL parity, where TRL
has a counterpart, is in test_preference_trl_parity.py)."""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.algorithms.dpo import PRESETS
from posttrain.losses.preference import PairLogps, PreferenceParams, preference_loss


def _pairs() -> PairLogps:
    # ρ_w = policy − ref: 0, −2, 4 ; ρ_l: 0, 1, −4
    return PairLogps(policy_chosen=torch.tensor([-5.0, -7.0, -1.0]), policy_rejected=torch.tensor([-6.0, -5.0, -10.0]),
                     ref_chosen=torch.tensor([-5.0, -5.0, -5.0]), ref_rejected=torch.tensor([-6.0, -6.0, -6.0]))


def test_mdpo_anchor_by_hand():
    """ℓ = −log σ(βρ_w), β = 0.5:  ρ_w = 0 → log 2 = 0.693147;  ρ_w = −2 → −log σ(−1) = log(1 + e) = 1.313262;
    ρ_w = 4 → −log σ(2) = log(1 + e^−2) = 0.126928. The rejected side does not enter."""
    got = preference_loss(_pairs(), PreferenceParams(beta=0.5), ["anchor"])
    torch.testing.assert_close(got, torch.tensor([math.log(2), math.log(1 + math.e), math.log(1 + math.exp(-2))]))


def test_mdpo_preset_is_dpo_plus_the_anchor_by_hand():
    """mdpo = [sigmoid, anchor], β = 0.1. Pair 2: Δ = ρ_w − ρ_l = −2 − 1 = −3, so DPO's −log σ(−0.3) = 0.854355
    and the anchor −log σ(−0.2) = 0.798139: 1.652494. The anchor is what penalises the chosen log-prob's fall
    (ρ_w = −2) that DPO alone would trade for margin."""
    assert PRESETS["mdpo"] == {"loss_type": ["sigmoid", "anchor"], "beta": 0.1}
    got = preference_loss(_pairs(), PreferenceParams(beta=0.1), PRESETS["mdpo"]["loss_type"])
    assert float(got[1]) == pytest.approx(math.log(1 + math.exp(0.3)) + math.log(1 + math.exp(0.2)), abs=1e-6)
    assert float(got[1]) == pytest.approx(1.652494, abs=1e-6)


def test_anchor_gradient_raises_the_chosen_log_prob_only():
    """d/d log π(y_w) of −log σ(βρ_w) = −β σ(−βρ_w): at ρ_w = 0, β = 0.5: −0.25; no gradient to y_l."""
    p = _pairs()
    p.policy_chosen.requires_grad_(True)
    p.policy_rejected.requires_grad_(True)
    preference_loss(p, PreferenceParams(beta=0.5), ["anchor"]).sum().backward()
    assert float(p.policy_chosen.grad[0]) == pytest.approx(-0.25)
    assert p.policy_rejected.grad is None  # not in the graph at all
