"""The GRPO algorithm's REINFORCE++ advantages on hand-computed numbers: with β > 0 the KL to the
reference goes into the token rewards (−β·k1 at every token, the score at the last), not the loss."""

from __future__ import annotations

import math

import pytest

from posttrain.algorithms.grpo import GRPO, GRPOConfig
from posttrain.config import build_config
from posttrain.online.experience import Sample


def samples_with_logps() -> list[Sample]:
    # sample 0: two tokens, log π_old − log π_ref = 0.2, −0.4; sample 1: one token, 0.6
    return [Sample([1], [5, 6], [-1.0, -2.0], 0, reward=1.0, ref_logps=[-1.2, -1.6]),
            Sample([1], [7], [-0.5], 0, reward=0.0, ref_logps=[-1.1])]


def reinforce_pp(beta: float) -> list[list[float]]:
    config = build_config(GRPOConfig, {"advantage": "reinforce_pp", "beta": beta, "num_generations": 2})
    algorithm, samples = GRPO(config, tokenizer=None, rewards=None), samples_with_logps()
    algorithm.assign_advantages(samples)
    return [s.advantage for s in samples]


def whitened(values: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))  # population σ, as the seed's whitening
    return [(v - mean) / (std + 1e-8) for v in values]


def test_kl_goes_into_the_token_rewards():
    # β = 0.5: token rewards −0.1, −(−0.2) + 1.0 = 1.2 | −0.3 + 0.0; returns-to-go 1.1, 1.2 | −0.3
    got = reinforce_pp(0.5)
    want = whitened([1.1, 1.2, -0.3])
    assert got[0] == pytest.approx(want[:2], abs=1e-6) and got[1] == pytest.approx(want[2:], abs=1e-6)


def test_without_beta_only_the_score_counts():
    got = reinforce_pp(0.0)  # returns-to-go 1.0, 1.0 | 0.0
    want = whitened([1.0, 1.0, 0.0])
    assert got[0] == pytest.approx(want[:2], abs=1e-6) and got[1] == pytest.approx(want[2:], abs=1e-6)


def test_the_loss_has_no_kl_term_under_reinforce_pp():
    config = build_config(GRPOConfig, {"advantage": "reinforce_pp", "beta": 0.5, "num_generations": 2})
    assert GRPO(config, tokenizer=None, rewards=None).loss_beta == 0.0
    grpo = build_config(GRPOConfig, {"advantage": "grpo", "beta": 0.5})
    assert GRPO(grpo, tokenizer=None, rewards=None).loss_beta == 0.5
