"""posttrain.online.algorithm.OnlineRL's step hook: PPO-penalty's β_old rule once per round, read from the
round's last pass, and kept in the state mid-round; the critic's optimizer of its own."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from posttrain.online.algorithm import OnlineRL


def penalty_rl(**values) -> OnlineRL:
    config = SimpleNamespace(**{"advantage": "grpo", "policy_loss": "penalty", "penalty_coef": 1.0, "penalty_target_kl": 0.01,
                                "num_iterations": 2, "num_minibatches": 2, **values})
    return OnlineRL(config, tokenizer=None, rewards=None)


def test_beta_old_doubles_or_halves_after_each_round_on_its_last_pass():
    """Rounds of 2 passes x 2 minibatches = 4 steps. Round 1's last pass (steps 3, 4) measures KL(π_old‖π_θ)
    0.001 and 0.003: d = 0.002 < 0.01/1.5, β_old halves at step 4 (the first pass's 9.0 is not read).
    Round 2: d = (0.03 + 0.05)/2 = 0.04 > 1.5 x 0.01, it doubles; round 3: d = 0.01, unchanged."""
    rl = penalty_rl()
    kls = [9.0, 9.0, 0.001, 0.003, 0.0, 0.0, 0.03, 0.05, 1.0, 1.0, 0.01, 0.01]
    logged = [rl.after_step(None, step, {"kl_old": kl})["penalty_coef"] for step, kl in enumerate(kls, 1)]
    assert logged == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_state_mid_round_resumes_the_same_rule():
    whole, cut = penalty_rl(), penalty_rl()
    for step, kl in enumerate([0.5, 0.5, 0.1], 1):
        whole.after_step(None, step, {"kl_old": kl})
        cut.after_step(None, step, {"kl_old": kl})
    resumed = penalty_rl()
    resumed.load_state_dict(cut.state_dict())  # stopped after step 3, inside round 1's last pass
    assert resumed.after_step(None, 4, {"kl_old": 0.2}) == whole.after_step(None, 4, {"kl_old": 0.2}) == {"penalty_coef": 2.0}


def test_fixed_beta_old_and_plain_clip():
    assert penalty_rl(penalty_target_kl=0.0).after_step(None, 4, {"kl_old": 5.0}) == {"penalty_coef": 1.0}
    assert penalty_rl(policy_loss="clip").after_step(None, 4, {}) == {}


@pytest.mark.parametrize("lr, own", [(None, None), (3e-4, (("v_head", "critic_trunk"), 3e-4))])
def test_critic_learning_rate_gives_the_critic_an_optimizer_of_its_own(lr, own):
    from posttrain.online.critic import Critic

    rl = OnlineRL(SimpleNamespace(advantage="gae", critic_learning_rate=lr), tokenizer=None, rewards=None)
    assert rl.own_optimizer() is None
    rl.critic = Critic("model")
    assert rl.own_optimizer() == own
