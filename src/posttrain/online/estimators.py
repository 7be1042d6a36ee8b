"""Advantage estimators: one registry, one signature.

    @estimator("name", critic="none" | "optional" | "required", ...)
    def name(rewards, token_rewards, mask, values, group, ctx) -> (advantages, returns)

    rewards        (N,) the outcome reward of each completion, NaN where none (masked)
    token_rewards  (N, T) per completion token: the reward at the last token, plus step rewards (a
                   process reward model) and −β·k1 per token when the KL is in the reward (PPO,
                   REINFORCE++); 0 off the completion
    mask           (N, T) 1 on the completion tokens that are trained
    values         (N, T) the critic's V(s_t), or None without a critic
    group          G: rows g·G … g·G+G−1 are the completions of one prompt
    ctx            `EstimatorContext`: the stage's options (gamma, lam, scale_rewards, ...), `reduce`
                   (a sum over processes, so batch statistics cover every process) and, for ReMax,
                   the greedy baseline reward of each completion's prompt
    advantages     (N,) one per completion, or (N, T) per token
    returns        (N, T) the critic's regression target (the discounted return-to-go when the
                   estimator has no value-based one)

Adding an estimator is one decorated function here and a test with hand-computed numbers
(tests/unit/online/test_estimators.py). The tensor mathematics lives in `losses.advantages`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from posttrain.losses import advantages as adv

CRITIC_USE = ("none", "optional", "required")


@dataclass
class EstimatorContext:
    options: object  # the stage config: gamma, lam, scale_rewards, std_unbiased ... (read with getattr + default)
    reduce: Callable | None = None  # posttrain.ranks.batch_reduce(): None in one process
    baseline: torch.Tensor | None = None  # (N,) ReMax: the reward of the greedy completion of each sample's prompt

    def get(self, name: str, default):
        return getattr(self.options, name, default)


@dataclass(frozen=True)
class Estimator:
    name: str
    compute: Callable
    critic: str  # none: no critic; optional: uses V as its baseline when there is one; required: needs V
    min_group: int = 1  # completions per prompt it needs (a group baseline needs siblings)
    kl_in_reward: bool = False  # β goes into the token rewards (−β·k1), not into the loss
    greedy_baseline: bool = False  # one extra greedy rollout per prompt, scored as the baseline (ReMax)
    help: str = ""


ESTIMATORS: dict[str, Estimator] = {}


def estimator(name: str, critic: str = "none", min_group: int = 1, kl_in_reward: bool = False,
              greedy_baseline: bool = False, help: str = ""):
    """Register `fn` under `name` (the value of the `advantage` option)."""
    if critic not in CRITIC_USE:
        raise ValueError(f"critic must be one of {CRITIC_USE}, got {critic!r}")

    def register(fn):
        ESTIMATORS[name] = Estimator(name, fn, critic, min_group, kl_in_reward, greedy_baseline, help or fn.__doc__.split("\n")[0])
        return fn
    return register


def returns_to_go(token_rewards: torch.Tensor, mask: torch.Tensor, ctx: EstimatorContext) -> torch.Tensor:
    return adv.discounted_returns(token_rewards, mask, ctx.get("gamma", 1.0))


# ------------------------------------------------------------------------------- the estimators


@estimator("grpo", min_group=2)
def grpo(rewards, token_rewards, mask, values, group, ctx):
    """Group-normalised: (r − mean_group) / std, std over the group, the batch or none (Dr.GRPO)."""
    scale, unbiased = ctx.get("scale_rewards", "group"), ctx.get("std_unbiased", True)
    advantages = adv.group_advantages(rewards, group, scale=scale, unbiased=unbiased, reduce=ctx.reduce)
    return advantages, returns_to_go(token_rewards, mask, ctx)


@estimator("rloo", min_group=2)
def rloo(rewards, token_rewards, mask, values, group, ctx):
    """Leave-one-out: r_i − mean of the prompt's other completions."""
    return adv.rloo_advantages(rewards, group), returns_to_go(token_rewards, mask, ctx)


@estimator("p3o", min_group=2, kl_in_reward=True)
def p3o(rewards, token_rewards, mask, values, group, ctx):
    """P3O: pairwise, Â_i = mean over siblings j of (R_i − R_j), R the trajectory reward with its KL penalty."""
    # P3O (Wu et al. 2023; seed 003 L3530-3543): a pair's gradient is ½(R_1 − R_2)∇(log π(y_1) − log π(y_2)),
    # R the trajectory reward r − β·Σ_t k1_t (the KL-from-SFT penalty sits in the token rewards; summed here).
    # Averaged over the C(G,2) pairs of a prompt it is (1/G) Σ_i Â_i ∇log π(y_i) with Â_i = 1/(G−1) Σ_{j≠i} (R_i − R_j),
    # RLOO's leave-one-out advantage of R; for G = 2, Â_1 = R_1 − R_2 and the (1/G) mean gives the pair's gradient.
    trajectory = torch.where(torch.isnan(rewards), rewards, token_rewards.float().sum(-1))
    return adv.rloo_advantages(trajectory, group), returns_to_go(token_rewards, mask, ctx)


@estimator("reinforce", critic="optional")
def reinforce(rewards, token_rewards, mask, values, group, ctx):
    """REINFORCE with a baseline: the batch mean reward, or with a critic V(s_t) per token (G_t − V_t)."""
    returns = returns_to_go(token_rewards, mask, ctx)
    if values is None:
        return adv.reinforce_advantages(rewards, None, baseline="mean", reduce=ctx.reduce), returns
    return torch.where(mask.bool(), returns - values.float(), 0), returns


@estimator("reinforce_pp", kl_in_reward=True)
def reinforce_pp(rewards, token_rewards, mask, values, group, ctx):
    """REINFORCE++: returns-to-go of the token rewards (KL inside), whitened over the batch's tokens."""
    returns = returns_to_go(token_rewards, mask, ctx)
    return adv.whiten(returns, mask, reduce=ctx.reduce), returns


@estimator("remax", greedy_baseline=True)
def remax(rewards, token_rewards, mask, values, group, ctx):
    """ReMax: r − r(greedy completion of the same prompt), one extra greedy rollout per prompt."""
    if ctx.baseline is None:
        raise ValueError("remax needs ctx.baseline: the reward of each prompt's greedy completion")
    valid = ~torch.isnan(rewards) & ~torch.isnan(ctx.baseline)
    return torch.where(valid, rewards - ctx.baseline, 0), returns_to_go(token_rewards, mask, ctx)


@estimator("gae", critic="required")
def gae(rewards, token_rewards, mask, values, group, ctx):
    """GAE(γ, λ) from the critic's values: Â_t = Σ_l (γλ)^l δ_{t+l}, returns Â + V."""
    return adv.gae(token_rewards, values, mask, ctx.get("gamma", 1.0), ctx.get("lam", 0.95))


@estimator("preference", min_group=2)
def preference(rewards, token_rewards, mask, values, group, ctx):
    """Online DPO's labels: +1 for the highest-rewarded completion of a prompt (chosen), −1 for the
    lowest (rejected), 0 for the rest; a group whose best and worst tie, or with fewer than two
    trained completions, is all 0 (no preference: left out of the loss)."""
    r = rewards.view(-1, group)
    usable = ~torch.isnan(r) & mask.bool().any(-1).view(-1, group)
    best = torch.where(usable, r, -torch.inf).argmax(-1, keepdim=True)  # the first of equal ones
    worst = torch.where(usable, r, torch.inf).argmin(-1, keepdim=True)
    decided = (usable.sum(-1, keepdim=True) >= 2) & (r.gather(-1, best) > r.gather(-1, worst))
    labels = torch.zeros_like(r).scatter(-1, best, 1.0).scatter(-1, worst, -1.0) * decided
    return labels.flatten(), returns_to_go(token_rewards, mask, ctx)
