"""GRPO's composition on hand-computed numbers: REINFORCE++ with β > 0 puts the KL to the reference
into the token rewards (−β·k1 at every token, the score at the last), not into the loss; options the
composition never reads are refused."""

from __future__ import annotations

import math

import pytest

from posttrain.algorithms.grpo import GRPOConfig, grpo_algorithm
from posttrain.config import build_config
from posttrain.errors import ConfigError
from posttrain.online.experience import Sample
from posttrain.online.maker import RolloutExperience


def samples_with_logps() -> list[Sample]:
    # sample 0: two tokens, log π_old − log π_ref = 0.2, −0.4; sample 1: one token, 0.6
    return [Sample([1], [5, 6], [-1.0, -2.0], 0, reward=1.0, ref_logps=[-1.2, -1.6]),
            Sample([1], [7], [-0.5], 0, reward=0.0, ref_logps=[-1.1])]


def experience_of(config) -> RolloutExperience:
    algorithm = grpo_algorithm(config, tokenizer=None, rewards=None)
    return RolloutExperience(config, None, None, algorithm.estimator, backend=None, policy=None, reward_kl=algorithm.reward_kl)


def reinforce_pp(beta: float) -> list[list[float]]:
    config = build_config(GRPOConfig, {"advantage": "reinforce_pp", "beta": beta, "num_generations": 2})
    samples = samples_with_logps()
    experience_of(config).finish(samples)
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
    assert config.loss_beta == 0.0 and grpo_algorithm(config, None, None).reward_kl.value == 0.5
    grpo = build_config(GRPOConfig, {"advantage": "grpo", "beta": 0.5})
    assert grpo.loss_beta == 0.5 and grpo_algorithm(grpo, None, None).reward_kl is None


@pytest.mark.parametrize("values, message", [
    ({"advantage": "rloo", "scale_rewards": "batch"}, "'scale_rewards' is set ('batch') but this run never reads it: it applies only with advantage=grpo"),
    ({"scale_rewards": "none", "population_std": True}, "'population_std'"),
    ({"beta": 0.0, "kl_estimator": "k1"}, "'kl_estimator' is set ('k1') but this run never reads it: it applies only with a KL term in the loss"),
    ({"advantage": "reinforce_pp", "beta": 0.1, "kl_estimator": "k1"}, "'kl_estimator'"),
    ({"overlong_penalty": 0.5}, "'overlong_penalty'"),
    ({"num_generations": 1}, "advantage=grpo compares samples of the same prompt: num_generations must be >= 2"),
    ({"temperature": 0.0}, "online RL needs temperature > 0, got 0.0"),
    ({"ref_sync": "hard"}, "ref_sync=hard updates the reference policy, but with beta = 0 no reference is loaded"),
    ({"beta": 0.1, "ref_sync": "hard", "ref_sync_alpha": 0.5}, "'ref_sync_alpha' is set (0.5) but this run never reads it: it applies only with ref_sync=soft"),
    ({"beta": 0.1, "ref_sync": "soft", "lora": True}, "under lora=true the reference is the adapter-disabled base"),
    ({"ref_sync_steps": 0}, "ref_sync_steps must be >= 1"),
    ({"policy_loss": "penalty"}, "policy_loss=penalty: with one optimizer step per round the policy is π_old at every update"),
    ({"penalty_coef": 2.0}, "'penalty_coef' is set (2.0) but this run never reads it: it applies only with policy_loss=penalty or clip_penalty"),
    ({"policy_loss": "penalty", "num_iterations": 2, "epsilon_high": 0.28}, "'epsilon_high'"),
])
def test_options_the_composition_never_reads_are_refused(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_config(GRPOConfig, values)


def test_options_it_reads_are_accepted():
    build_config(GRPOConfig, {"scale_rewards": "batch", "population_std": True, "beta": 0.1, "kl_estimator": "k1",
                              "overlong_buffer": 4, "overlong_penalty": 0.5, "dynamic_sampling": True, "max_sampling_rounds": 5})
    build_config(GRPOConfig, {"advantage": "remax", "num_generations": 1})
    build_config(GRPOConfig, {"beta": 0.04, "ref_sync": "soft", "ref_sync_steps": 10, "ref_sync_alpha": 0.1,
                              "policy_loss": "clip_penalty", "num_minibatches": 2, "penalty_coef": 0.5, "penalty_target_kl": 0.0})
