"""Every registered advantage estimator on hand-computed numbers, through its one signature
(rewards, token_rewards, mask, values, group, ctx) -> (advantages, returns); and the registry is
the extension point: one decorated function is a new estimator the stages accept."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from posttrain.online.estimators import ESTIMATORS, EstimatorContext, estimator

# Two prompts x G = 2 completions; completion lengths 2, 1, 3, 2 tokens.
REWARDS = torch.tensor([1.0, 0.0, 2.0, 2.0])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]], dtype=torch.float32)


def last_token_rewards(rewards=REWARDS, mask=MASK) -> torch.Tensor:
    out = torch.zeros(mask.shape)
    for r in range(mask.shape[0]):
        out[r, int(mask[r].sum()) - 1] = rewards[r]
    return out


def run(name, rewards=REWARDS, token_rewards=None, values=None, group=2, baseline=None, reduce=None, **options):
    ctx = EstimatorContext(SimpleNamespace(**options), reduce, baseline)
    tokens = last_token_rewards(rewards) if token_rewards is None else token_rewards
    return ESTIMATORS[name].compute(rewards, tokens, MASK, values, group, ctx)


def test_the_registry_lists_the_canon_with_its_needs():
    assert set(ESTIMATORS) >= {"grpo", "rloo", "reinforce", "reinforce_pp", "remax", "gae"}
    assert ESTIMATORS["gae"].critic == "required" and ESTIMATORS["reinforce"].critic == "optional"
    assert ESTIMATORS["grpo"].min_group == ESTIMATORS["rloo"].min_group == 2
    assert ESTIMATORS["reinforce_pp"].kl_in_reward and ESTIMATORS["remax"].greedy_baseline


def test_grpo_group_std_sample_and_population():
    # group 1: rewards 1, 0: mean 0.5, sample std sqrt(0.5), population std 0.5; group 2: all equal -> 0
    adv, returns = run("grpo")
    s = math.sqrt(0.5)
    assert adv.tolist() == pytest.approx([0.5 / (s + 1e-4), -0.5 / (s + 1e-4), 0.0, 0.0], abs=1e-6)
    adv, _ = run("grpo", std_unbiased=False)  # seed 000 eq. 30
    assert adv.tolist() == pytest.approx([0.5 / 0.5001, -0.5 / 0.5001, 0.0, 0.0], abs=1e-6)
    # the return-to-go (gamma 1) of a last-token reward is the reward at every token
    assert torch.equal(returns, torch.tensor([[1.0, 1, 0], [0, 0, 0], [2, 2, 2], [2, 2, 0]]))


def test_grpo_batch_std_and_no_std():
    # batch std of 1, 0, 2, 2: mean 1.25, sample var (0.0625 + 1.5625 + 0.5625 * 2) / 3 = 0.9167
    adv, _ = run("grpo", scale_rewards="batch")
    s = math.sqrt(2.75 / 3)
    assert adv.tolist() == pytest.approx([0.5 / (s + 1e-4), -0.5 / (s + 1e-4), 0.0, 0.0], abs=1e-6)
    adv, _ = run("grpo", scale_rewards="none")  # Dr.GRPO: r - group mean
    assert adv.tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])


def test_rloo_leaves_one_out():
    rewards = torch.tensor([1.0, 0.0, 3.0, 0.0, 2.0, 4.0])  # G = 3
    adv, _ = ESTIMATORS["rloo"].compute(rewards, torch.zeros(6, 1), torch.ones(6, 1), None, 3, EstimatorContext(None))
    # 1 - (0 + 3)/2, 0 - (1 + 3)/2, 3 - (1 + 0)/2 | 0 - 3, 2 - 2, 4 - 1
    assert adv.tolist() == pytest.approx([-0.5, -2.0, 2.5, -3.0, 0.0, 3.0])


def test_reinforce_batch_mean_or_the_critic_as_baseline():
    adv, _ = run("reinforce")  # the batch mean 1.25
    assert adv.tolist() == pytest.approx([-0.25, -1.25, 0.75, 0.75])
    values = torch.full(MASK.shape, 0.5) * MASK
    adv, returns = run("reinforce", values=values, gamma=0.5)
    # returns-to-go with gamma 0.5: row 0: 0.5, 1; row 2: 0.5, 1, 2; minus V = 0.5 per token
    assert returns[0].tolist() == pytest.approx([0.5, 1.0, 0.0]) and returns[2].tolist() == pytest.approx([0.5, 1.0, 2.0])
    assert adv[0].tolist() == pytest.approx([0.0, 0.5, 0.0]) and adv[2].tolist() == pytest.approx([0.0, 0.5, 1.5])


def test_reinforce_pp_whitens_the_returns_over_every_valid_token():
    adv, returns = run("reinforce_pp")
    valid = returns[MASK.bool()]  # 1, 1 | 0 | 2, 2, 2 | 2, 2
    mean = valid.mean()
    std = ((valid - mean) ** 2).mean().sqrt()  # population sigma
    assert adv[MASK.bool()].tolist() == pytest.approx(((valid - mean) / (std + 1e-8)).tolist(), abs=1e-6)
    assert adv[~MASK.bool()].abs().sum() == 0


def test_remax_subtracts_the_greedy_completions_reward():
    baseline = torch.tensor([0.5, 0.5, 2.5, 2.5])  # each prompt's greedy completion's reward, per sample
    adv, _ = run("remax", baseline=baseline)
    assert adv.tolist() == pytest.approx([0.5, -0.5, -0.5, -0.5])
    nan = torch.tensor([float("nan"), 0.5, 2.5, 2.5])  # a masked baseline or reward gives 0
    adv, _ = run("remax", baseline=nan)
    assert adv.tolist() == pytest.approx([0.0, -0.5, -0.5, -0.5])
    with pytest.raises(ValueError, match="greedy completion"):
        run("remax")


def test_p3o_pairwise_advantage_of_the_kl_penalised_trajectory_reward():
    """R_i = r_i − Σ_t β·k1_t, here −0.1 per completion token: R = 1 − 0.2, 0 − 0.1, 2 − 0.3, 2 − 0.2 = 0.8, −0.1, 1.7, 1.8.
    G = 2: Â_1 = R_1 − R_2 = 0.9, Â_2 = −0.9; the second pair ties on r but not on R: −0.1, 0.1."""
    tokens = last_token_rewards() - 0.1 * MASK
    adv, _ = run("p3o", token_rewards=tokens)
    torch.testing.assert_close(adv, torch.tensor([0.9, -0.9, -0.1, 0.1]))
    assert ESTIMATORS["p3o"].kl_in_reward and ESTIMATORS["p3o"].min_group == 2


def test_p3o_over_all_pairs_of_a_group():
    """G = 3, R = 3, 0, 1 (no KL): Â_i = mean_{j≠i}(R_i − R_j) = (3 + 2)/2, (−3 − 1)/2, (−2 + 1)/2 = 2.5, −2, −0.5.
    A NaN reward (unscored) gets 0 and leaves its siblings' means: R = 3, NaN, 1 -> 2, 0, −2."""
    mask = torch.ones(3, 1)
    for rewards, expected in (([3.0, 0.0, 1.0], [2.5, -2.0, -0.5]), ([3.0, math.nan, 1.0], [2.0, 0.0, -2.0])):
        r = torch.tensor(rewards)
        ctx = EstimatorContext(SimpleNamespace(), None, None)
        adv, _ = ESTIMATORS["p3o"].compute(r, torch.nan_to_num(r).view(3, 1), mask, None, 3, ctx)
        torch.testing.assert_close(adv, torch.tensor(expected))


def test_p3o_preset_loss_gives_the_papers_pair_gradient():
    """With the p3o preset's loss (trajectory ratio π(y|x)/π_old(y|x), grpo aggregation (1/G) Σ_i) on-policy, the
    gradient is ½(R_1 − R_2)∇(log π(y_1) − log π(y_2)) (descent on −): d loss/d log π(y_1|x) = −(R_1 − R_2)/2,
    here R = 0.8, −0.1 -> −0.45 and +0.45 on every token of y_1 and y_2 (∇log π(y) = Σ_t ∇log π(y_t|·))."""
    from posttrain.algorithms.grpo import PRESETS
    from posttrain.losses.policy import policy_loss

    preset = PRESETS["p3o"]
    adv, _ = run("p3o", token_rewards=last_token_rewards() - 0.1 * MASK)
    logps = (-1.0 * MASK[:2]).requires_grad_(True)
    out = policy_loss(logps, logps.detach(), adv[:2], MASK[:2], ratio_level=preset["ratio_level"], aggregation=preset["loss_type"])
    (out.loss / out.weight).backward()  # the loop divides the summed loss by its weight (sequences)
    torch.testing.assert_close(logps.grad, torch.tensor([[-0.45, -0.45, 0.0], [0.45, 0.0, 0.0]]))


def test_gae_by_hand():
    # one row of 3 tokens, reward 1 at the last, V = 0.2, 0.4, 0.6, gamma 0.9, lambda 0.5
    mask = torch.ones(1, 3)
    values = torch.tensor([[0.2, 0.4, 0.6]])
    tokens = torch.tensor([[0.0, 0.0, 1.0]])
    ctx = EstimatorContext(SimpleNamespace(gamma=0.9, lam=0.5))
    adv, returns = ESTIMATORS["gae"].compute(torch.tensor([1.0]), tokens, mask, values, 1, ctx)
    d2 = 1.0 - 0.6                 # delta_2 = r_2 - V_2 (V beyond the end is 0)
    d1 = 0.0 + 0.9 * 0.6 - 0.4     # delta_1 = r_1 + gamma V_2 - V_1
    d0 = 0.0 + 0.9 * 0.4 - 0.2
    a2 = d2
    a1 = d1 + 0.45 * a2
    a0 = d0 + 0.45 * a1
    assert adv[0].tolist() == pytest.approx([a0, a1, a2])
    assert returns[0].tolist() == pytest.approx([a0 + 0.2, a1 + 0.4, a2 + 0.6])


def test_one_decorated_function_is_a_new_estimator():
    @estimator("test_sign", help="sign of the reward")
    def sign(rewards, token_rewards, mask, values, group, ctx):
        return torch.sign(rewards), token_rewards

    try:
        adv, _ = run("test_sign", rewards=torch.tensor([2.0, -3.0, 0.0, 1.0]))
        assert adv.tolist() == [1.0, -1.0, 0.0, 1.0]
        assert ESTIMATORS["test_sign"].critic == "none" and ESTIMATORS["test_sign"].help == "sign of the reward"
    finally:
        del ESTIMATORS["test_sign"]
    with pytest.raises(ValueError, match="critic must be one of"):
        estimator("bad", critic="sometimes")


def test_preference_labels_the_best_and_worst_of_each_prompt_and_drops_ties():
    # G = 2: prompt 1 has rewards 1 > 0 -> chosen, rejected; prompt 2 ties at 2, 2 -> no preference
    adv, _ = run("preference")
    assert adv.tolist() == [1.0, -1.0, 0.0, 0.0]
    # G = 4, one prompt: rewards 0.5, 3, NaN (no reward), -1 -> the 3 is chosen, the -1 rejected, the rest 0
    adv, _ = run("preference", rewards=torch.tensor([0.5, 3.0, float("nan"), -1.0]), group=4)
    assert adv.tolist() == [0.0, 1.0, 0.0, -1.0]
    # a completion left out of the loss (all-zero mask row) is never part of a pair: one usable left -> none
    ctx = EstimatorContext(SimpleNamespace())
    masked = MASK.clone()
    masked[1] = 0
    adv, _ = ESTIMATORS["preference"].compute(REWARDS, torch.zeros(4, 3), masked, None, 2, ctx)
    assert adv.tolist() == [0.0, 0.0, 0.0, 0.0]
    assert ESTIMATORS["preference"].min_group == 2
