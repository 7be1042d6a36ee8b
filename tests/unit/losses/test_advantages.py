"""Advantage estimators (posttrain.losses.advantages): hand-computed values, closed forms, masks,
degenerate groups, errors, and parity with TRL 1.16.

TRL parity: TRL computes GRPO's and RLOO's advantages inline in each trainer's
`_generate_and_score_completions` (not a callable function), so we build a real tiny
`trl.GRPOTrainer` and `trl.RLOOTrainer` (a 2-layer random Llama, 2-token completions, ~0.2 s) whose
reward function returns preset rewards from a dataset column, call that method, and compare its
"advantages" with ours on the same rewards — including rewards of None (unscorable completions).
"""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.losses.advantages import (discounted_returns, gae, group_advantages, reinforce_advantages,
                                         reinforce_plus_plus_advantages, rloo_advantages, whiten)

NAN = float("nan")


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


# ---------------------------------------------------------------- group (GRPO / Dr.GRPO)

# group 0 = [1, 0, 1, 0]: mean 0.5, deviations ±0.5, Σ dev² = 1
#   unbiased std = sqrt(1/3) = 0.577350, population std = 0.5
# group 1 = [2, 2, 2, 2]: no signal
# batch of 8: mean 1.25, Σ dev² = 2·(0.25² + 1.25²) + 4·0.75² = 5.5, unbiased std = sqrt(5.5/7) = 0.886405
REWARDS = t(1, 0, 1, 0, 2, 2, 2, 2)


def test_group_scale_hand_values():
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)  # 0.865875
    assert group_advantages(REWARDS, 4).tolist() == pytest.approx([a, -a, a, -a, 0, 0, 0, 0], abs=1e-6)
    assert a == pytest.approx(0.865875, abs=1e-6)


def test_group_scale_population_std_is_seed_s0():
    # S0 eq. 30: σ = 0.5, so ±0.5 / (0.5 + 1e-4) = ±0.99980
    got = group_advantages(REWARDS, 4, unbiased=False)
    assert got.tolist() == pytest.approx([0.5 / 0.5001, -0.5 / 0.5001, 0.5 / 0.5001, -0.5 / 0.5001, 0, 0, 0, 0], abs=1e-6)


def test_batch_scale_hand_values():
    a = 0.5 / (math.sqrt(5.5 / 7) + 1e-4)  # deviation from the GROUP mean over the BATCH std = 0.564012
    assert group_advantages(REWARDS, 4, scale="batch").tolist() == pytest.approx([a, -a, a, -a, 0, 0, 0, 0], abs=1e-6)
    assert a == pytest.approx(0.564012, abs=1e-6)


def test_none_scale_is_dr_grpo_mean_baseline():
    assert group_advantages(REWARDS, 4, scale="none").tolist() == [0.5, -0.5, 0.5, -0.5, 0, 0, 0, 0]
    r = torch.randn(12)
    assert torch.allclose(group_advantages(r, 3, scale="none"), r - r.view(4, 3).mean(1).repeat_interleave(3), atol=1e-6)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_all_equal_groups_are_exactly_zero(scale):
    # 0.1 + 0.1 + 0.1 = 0.30000001 in float32: the float mean is an ulp off 0.1, so r − mean ≠ 0 and
    # dividing by the ~1e-9 std would give noise; the group is zeroed instead
    r = t(0.1, 0.1, 0.1, 0.7, 0.7, 0.7)
    out = group_advantages(r, 3, scale=scale)
    assert out.tolist() == [0.0] * 6
    assert not torch.isnan(group_advantages(t(5.0), 1, scale=scale)).any()  # one completion per prompt
    assert group_advantages(t(5.0, 3.0), 1, scale=scale).tolist() == [0.0, 0.0]


def test_group_nan_rewards_are_left_out():
    # [1, nan, 0, 0.5]: scorable mean 0.5, deviations 0.5, −0.5, 0; unbiased var = 0.5/2, std 0.5
    out = group_advantages(t(1, NAN, 0, 0.5), 4)
    assert out.tolist() == pytest.approx([0.5 / 0.5001, 0, -0.5 / 0.5001, 0], abs=1e-6)
    # batch scale over the 2 scorable rewards [1, 2]: unbiased std = sqrt(0.5) = 0.707107
    b = 0.5 / (math.sqrt(0.5) + 1e-4)
    assert group_advantages(t(NAN, NAN, 1, 2), 2, scale="batch").tolist() == pytest.approx([0, 0, -b, b], abs=1e-6)


def test_group_integer_rewards_become_float():
    assert group_advantages(torch.tensor([1, 0]), 2, scale="none").tolist() == [0.5, -0.5]


def test_group_errors():
    with pytest.raises(ValueError, match=r"1-D \(N,\), got shape \(2, 2\)"):
        group_advantages(torch.zeros(2, 2), 2)
    with pytest.raises(ValueError, match="5 rewards do not split into groups of group_size=2"):
        group_advantages(torch.zeros(5), 2)
    with pytest.raises(ValueError, match="group_size must be >= 1, got 0"):
        group_advantages(torch.zeros(4), 0)
    with pytest.raises(ValueError, match=r"scale must be one of \('group', 'batch', 'none'\), got 'std'"):
        group_advantages(torch.zeros(4), 2, scale="std")


# ---------------------------------------------------------------- RLOO

def test_rloo_hand_values():
    # r0 = 1: baseline (0 + 1 + 0)/3 = 1/3 → 2/3;  r1 = 0: baseline (1 + 1 + 0)/3 = 2/3 → −2/3
    assert rloo_advantages(t(1, 0, 1, 0), 4).tolist() == pytest.approx([2 / 3, -2 / 3, 2 / 3, -2 / 3], abs=1e-6)
    # pairs: r_i − r_j
    assert rloo_advantages(t(3, 1, 5, 5), 2).tolist() == [2, -2, 0, 0]


def test_rloo_is_scaled_mean_baseline():
    r = torch.randn(20)
    assert torch.allclose(rloo_advantages(r, 5), 5 / 4 * group_advantages(r, 5, scale="none"), atol=1e-6)


def test_rloo_nan_and_lone_completion():
    # [1, nan, 0, 0.5]: 3 scorable; 1 − (0 + 0.5)/2 = 0.75, 0 − (1 + 0.5)/2 = −0.75, 0.5 − (1 + 0)/2 = 0
    assert rloo_advantages(t(1, NAN, 0, 0.5), 4).tolist() == pytest.approx([0.75, 0, -0.75, 0], abs=1e-6)
    assert rloo_advantages(t(NAN, NAN, NAN, 3), 4).tolist() == [0, 0, 0, 0]  # no sibling, no baseline


def test_rloo_normalize():
    # [2/3, −2/3, 2/3, −2/3]: mean 0, unbiased std = sqrt(4·(4/9)/3) = 0.769800
    a = (2 / 3) / (math.sqrt(16 / 27) + 1e-4)
    assert rloo_advantages(t(1, 0, 1, 0), 4, normalize=True).tolist() == pytest.approx([a, -a, a, -a], abs=1e-6)


def test_rloo_errors():
    with pytest.raises(ValueError, match="RLOO needs group_size >= 2"):
        rloo_advantages(t(1, 2), 1)
    with pytest.raises(ValueError, match="3 rewards do not split into groups of group_size=2"):
        rloo_advantages(t(1, 2, 3), 2)


# ---------------------------------------------------------------- REINFORCE

def test_reinforce_baselines():
    r = t(1, 2, 3, 6)
    assert reinforce_advantages(r).tolist() == [-2, -1, 0, 3]  # batch mean 3
    assert reinforce_advantages(r, group_size=2).tolist() == [-0.5, 0.5, -1.5, 1.5]  # means 1.5, 4.5
    assert reinforce_advantages(r, baseline="none").tolist() == [1, 2, 3, 6]
    assert torch.equal(reinforce_advantages(r, 2), group_advantages(r, 2, scale="none"))
    assert reinforce_advantages(t(1, NAN, 3)).tolist() == [-1, 0, 1]
    with pytest.raises(ValueError, match="baseline must be one of"):
        reinforce_advantages(r, baseline="value")


# ---------------------------------------------------------------- whiten, returns, REINFORCE++

def test_whiten_hand_values():
    values, mask = t(1, 2, 3, 100).view(1, 4), torch.tensor([[1, 1, 1, 0]])
    # mean 2, population var (1 + 0 + 1)/3 = 2/3, std 0.816497 → ±1.224745; the 100 is padding
    z = 1 / math.sqrt(2 / 3)
    assert whiten(values, mask).tolist()[0] == pytest.approx([-z, 0, z, 0], abs=1e-6)
    assert whiten(values, mask, shift_mean=False).tolist()[0] == pytest.approx([2 - z, 2, 2 + z, 0], abs=1e-6)
    assert whiten(values, torch.zeros(1, 4)).tolist() == [[0, 0, 0, 0]]
    out = whiten(torch.randn(3, 7) * 5 + 2, torch.ones(3, 7))
    assert float(out.mean()) == pytest.approx(0, abs=1e-6) and float(out.var(unbiased=False)) == pytest.approx(1, abs=1e-5)
    with pytest.raises(ValueError, match=r"values has shape \(2, 3\) but mask has shape \(2, 4\)"):
        whiten(torch.zeros(2, 3), torch.ones(2, 4))


def test_discounted_returns_hand_values():
    # γ = 0.5: G2 = 3, G1 = 2 + 0.5·3 = 3.5, G0 = 1 + 0.5·3.5 = 2.75
    assert discounted_returns(t(1, 2, 3).view(1, 3), torch.ones(1, 3), 0.5).tolist() == [[2.75, 3.5, 3.0]]
    # a masked token inside the row (tool output) is skipped: G0 = 1 + 0.5·3 = 2.5
    assert discounted_returns(t(1, 9, 3).view(1, 3), torch.tensor([[1, 0, 1]]), 0.5).tolist() == [[2.5, 0, 3]]
    # right padding: rewards on padding never leak in
    assert discounted_returns(t(1, 2, 7).view(1, 3), torch.tensor([[1, 1, 0]]), 1.0).tolist() == [[3, 2, 0]]


def test_reinforce_plus_plus_hand_values():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # returns (γ = 1): [1, 1, 1] and [2, 2, pad]; over 5 tokens mean 1.4, var (3·0.16 + 2·0.36)/5 = 0.24
    s = math.sqrt(0.24)
    lo, hi = -0.4 / s, 0.6 / s  # −0.816497, 1.224745
    assert reinforce_plus_plus_advantages(rewards, mask).tolist() == [pytest.approx([lo, lo, lo], abs=1e-6),
                                                                     pytest.approx([hi, hi, 0], abs=1e-6)]


# ---------------------------------------------------------------- GAE

def test_gae_hand_values():
    r, v = t(0, 0, 1).view(1, 3), t(0.5, 0.6, 0.7).view(1, 3)
    # γ = 0.9, λ = 0.8, γλ = 0.72
    # δ2 = 1 + 0.9·0 − 0.7 = 0.3;  δ1 = 0 + 0.9·0.7 − 0.6 = 0.03;  δ0 = 0 + 0.9·0.6 − 0.5 = 0.04
    # Â2 = 0.3;  Â1 = 0.03 + 0.72·0.3 = 0.246;  Â0 = 0.04 + 0.72·0.246 = 0.21712
    adv, ret = gae(r, v, torch.ones(1, 3), gamma=0.9, lam=0.8)
    assert adv.tolist()[0] == pytest.approx([0.21712, 0.246, 0.3], abs=1e-6)
    assert ret.tolist()[0] == pytest.approx([0.71712, 0.846, 1.0], abs=1e-6)  # Â + V


def _random_episode(seed=0):
    g = torch.Generator().manual_seed(seed)
    rewards, values = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    mask = torch.zeros(4, 6)
    for row, length in enumerate([6, 3, 1, 5]):
        mask[row, :length] = 1
    return rewards, values, mask


def test_gae_lambda_zero_is_td_error():
    r, v, m = _random_episode()
    gamma = 0.9
    next_v = torch.cat([v[:, 1:] * m[:, 1:], torch.zeros(4, 1)], dim=1)  # V beyond the last valid token = 0
    td = (r + gamma * next_v - v) * m
    adv, ret = gae(r, v, m, gamma=gamma, lam=0.0)
    assert torch.allclose(adv, td, atol=1e-6)
    assert torch.allclose(ret, (r + gamma * next_v) * m, atol=1e-6)  # one-step bootstrapped target


def test_gae_lambda_one_is_monte_carlo_return_minus_value():
    r, v, m = _random_episode(1)
    adv, ret = gae(r, v, m, gamma=0.95, lam=1.0)
    mc = discounted_returns(r, m, 0.95)
    assert torch.allclose(adv, (mc - v) * m, atol=1e-5)
    assert torch.allclose(ret, mc, atol=1e-5)


def test_gae_bandit_form_is_reward_minus_value():
    # S3 L1773: only the last token is rewarded (R = 2, 1); γ = λ = 1 gives A_t = R − V_t
    m = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    r = torch.tensor([[0, 0, 0, 2.0], [0, 1.0, 0, 0]])
    v = torch.tensor([[0.5, 1.0, 1.5, 3.0], [0.2, 0.4, 9, 9]])
    adv, ret = gae(r, v, m, gamma=1.0, lam=1.0)
    assert adv.tolist() == [pytest.approx([1.5, 1.0, 0.5, -1.0]), pytest.approx([0.8, 0.6, 0, 0])]
    assert ret.tolist() == [[2, 2, 2, 2], [1, 1, 0, 0]]


def test_gae_masks():
    r, v, m = _random_episode(2)
    adv, ret = gae(r, v, m, gamma=0.99, lam=0.95)
    assert (adv[m == 0] == 0).all() and (ret[m == 0] == 0).all()
    # whatever sits on the padding changes nothing
    adv2, ret2 = gae(r + 100 * (1 - m), v - 50 * (1 - m), m, gamma=0.99, lam=0.95)
    assert torch.equal(adv, adv2) and torch.equal(ret, ret2)
    # a masked stretch inside a row is skipped: same result as the row without it
    full_r, full_v = t(1, 2, 3, 4).view(1, 4), t(0.1, 0.2, 0.3, 0.4).view(1, 4)
    gap_r, gap_v = t(1, 2, 7, 7, 3, 4).view(1, 6), t(0.1, 0.2, 5, 5, 0.3, 0.4).view(1, 6)
    gap_m = torch.tensor([[1, 1, 0, 0, 1, 1]])
    a_full, _ = gae(full_r, full_v, torch.ones(1, 4), 0.9, 0.7)
    a_gap, _ = gae(gap_r, gap_v, gap_m, 0.9, 0.7)
    assert torch.allclose(a_gap[gap_m.bool()], a_full.flatten(), atol=1e-6)


def test_gae_no_grad_and_errors():
    r, v, m = _random_episode(3)
    adv, ret = gae(r, v.requires_grad_(), m, 1.0, 0.95)
    assert not adv.requires_grad and not ret.requires_grad
    with pytest.raises(ValueError, match=r"values has shape \(4, 5\) but mask has shape \(4, 6\)"):
        gae(r, v[:, :5], m, 1.0, 0.95)
    with pytest.raises(ValueError, match=r"mask must be 2-D \(B, T\)"):
        gae(r.flatten(), v.flatten(), m.flatten(), 1.0, 0.95)


# ---------------------------------------------------------------- TRL parity

PARITY_REWARDS = [
    [1.0, 0.0, 0.5, 0.25, 2.0, 2.0, 2.0, 2.0, -1.0, 3.0, 0.5, 0.5],
    [0.3, None, 1.0, 0.0, None, None, None, 4.0, 0.1, 0.2, 0.3, 0.9],  # unscorable completions
]


@pytest.fixture(scope="module")
def trl_trainers(tmp_path_factory):
    trl = pytest.importorskip("trl")  # only the parity tests need TRL
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from conftest import make_model_dir

    root = tmp_path_factory.mktemp("trl-adv")
    path = make_model_dir(root / "model", "llama")

    def preset_reward(prompts, completions, preset, **kwargs):  # the dataset column "preset"
        return list(preset)

    rows = Dataset.from_list([{"prompt": f"What is {i}?", "preset": 0.0} for i in range(3)])
    common = dict(per_device_train_batch_size=12, num_generations=4, max_completion_length=2, report_to="none",
                  use_cpu=True, beta=0.0)
    trainers = {}
    for name, config, cls in [("grpo", trl.GRPOConfig, trl.GRPOTrainer), ("rloo", trl.RLOOConfig, trl.RLOOTrainer)]:
        model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
        args = config(output_dir=str(root / name), **common)
        trainers[name] = cls(model=model, reward_funcs=preset_reward, args=args, train_dataset=rows,
                             processing_class=tokenizer)
        trainers[name].model.train()  # train mode: num_generations, not num_generations_eval
    return trainers


def _trl_advantages(trainer, rewards) -> torch.Tensor:
    inputs = [{"prompt": f"What is {i // 4}?", "preset": r} for i, r in enumerate(rewards)]
    with torch.no_grad():
        return trainer._generate_and_score_completions(inputs)["advantages"].float()


@pytest.mark.parametrize("rewards", PARITY_REWARDS)
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_equal_trl_grpo(trl_trainers, scale, rewards):
    trainer = trl_trainers["grpo"]
    trainer.scale_rewards = scale
    theirs = _trl_advantages(trainer, rewards)
    ours = group_advantages(torch.tensor([NAN if r is None else r for r in rewards]), 4, scale=scale)
    assert theirs.abs().max() > 0.1  # a real comparison, not zeros against zeros
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-6), (ours, theirs)


@pytest.mark.parametrize("rewards", PARITY_REWARDS)
@pytest.mark.parametrize("normalize", [False, True])
def test_rloo_advantages_equal_trl_rloo(trl_trainers, normalize, rewards):
    trainer = trl_trainers["rloo"]
    trainer.normalize_advantages = normalize
    theirs = _trl_advantages(trainer, rewards)
    ours = rloo_advantages(torch.tensor([NAN if r is None else r for r in rewards]), 4, normalize=normalize)
    assert theirs.abs().max() > 0.1
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-6), (ours, theirs)
