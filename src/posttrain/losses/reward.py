"""Reward-model losses: Bradley-Terry on pairs (hard or soft labels, optional margin), K-wise rankings.

Bradley-Terry (SEED_NOTES 1.2; seed 003 L1670-1683, seed 000 eq. 42, seed 004 L234-267):

    P(y_w ≻ y_l | x) = σ(r(x, y_w) − r(x, y_l)),      L = −log σ(r(x, y_w) − r(x, y_l))

Soft labels and ties (seed 002 L73-78): μ = P(chosen ≻ rejected) ∈ [0, 1], 0.5 for a tie,

    L = −μ log σ(Δ) − (1 − μ) log σ(−Δ),              Δ = r(x, y_c) − r(x, y_r)

Margin (TRL's `margin` column; Llama 2's "margin label", seed 003 L2065-2073, which gives no
formula): the preferred side must win by at least m, so m is subtracted inside the sigmoid in the
preferred direction: −μ log σ(Δ − m) − (1 − μ) log σ(−Δ − m). With μ = 1 this is TRL's
−log σ(r_c − r_r − m) exactly.

K-wise rankings (InstructGPT, seed 003 L1640-1699): all C(K, 2) pairs of one prompt form ONE batch
element, each completion scored once, and the prompt's loss is the mean over its pairs:

    L_RM = −1 / C(K, 2) · Σ_{(y_w, y_l)} log σ(r(x, y_w) − r(x, y_l))

Trajectory-level Bradley-Terry (seed 002 L98-110; seed 003's step reward R_φ(o_t, a_t, o_{t+1}),
L2987-3125): a trajectory's return is the sum of its step rewards, and the preference between two
trajectories is Bradley-Terry on the returns,

    P(τ_w ≻ τ_l) = exp Σ_t r_t^w / (exp Σ_t r_t^w + exp Σ_t r_t^l) = σ(Σ_t r_t^w − Σ_t r_t^l)

so one pair of single-step "trajectories" is the pairwise loss above.

Reward centering (TRL's `center_rewards_coefficient`, Eisenstein et al. 2023): + c · (r_c + r_r)²
per pair, which pins the (otherwise free) additive level of the rewards near zero.
"""

from __future__ import annotations

from itertools import combinations

import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                       label: torch.Tensor | None = None, margin: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pair loss −μ log σ(Δ − m) − (1 − μ) log σ(−Δ − m), Δ = r_c − r_r (float32; no reduction).

    label: μ = P(chosen ≻ rejected) per pair (None: 1, the hard Bradley-Terry loss).
    margin: m per pair (None: 0), the amount by which the preferred side should win.
    """
    delta = chosen_rewards.float() - rejected_rewards.float()
    m = 0.0 if margin is None else margin.float()
    loss = -F.logsigmoid(delta - m)
    if label is None:
        return loss
    mu = label.float()
    return mu * loss + (1 - mu) * -F.logsigmoid(-delta - m)


def trajectory_returns(step_rewards: torch.Tensor, trajectory_of_step: torch.Tensor, num_trajectories: int) -> torch.Tensor:
    """(num_trajectories,) float32 returns R(τ_j) = Σ_{t ∈ τ_j} r_t; trajectory_of_step[t] is the trajectory of step t."""
    returns = torch.zeros(num_trajectories, dtype=torch.float32, device=step_rewards.device)
    return returns.index_add(0, trajectory_of_step, step_rewards.float())


def trajectory_bradley_terry_loss(step_rewards: torch.Tensor, trajectory_of_step: torch.Tensor, num_trajectories: int,
                                  winners: torch.Tensor, losers: torch.Tensor, label: torch.Tensor | None = None,
                                  margin: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pair −log σ(R(τ_w) − R(τ_l)) (with `bradley_terry_loss`'s soft label and margin), R the summed step rewards.

    step_rewards: (steps,) R_φ(o_t, a_t, o_{t+1}) of every step of every trajectory in the batch;
    winners / losers: (pairs,) trajectory indices of each pair's preferred and other trajectory.
    """
    returns = trajectory_returns(step_rewards, trajectory_of_step, num_trajectories)
    return bradley_terry_loss(returns[winners], returns[losers], label, margin)


def centering_penalty(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Per-pair (r_c + r_r)², TRL's reward-centering term (multiply by the coefficient)."""
    return (chosen_rewards.float() + rejected_rewards.float()) ** 2


def ranking_pairs(ranking: list[int]) -> list[tuple[int, int]]:
    """All C(K, 2) (winner, loser) index pairs of a ranking; ranking[i] is the rank of item i, 0 = best.

    Pairs come best first: ordered by (rank of winner, rank of loser).
    """
    best_first = sorted(range(len(ranking)), key=lambda i: ranking[i])
    return [(best_first[a], best_first[b]) for a, b in combinations(range(len(best_first)), 2)]


def ranking_loss(rewards: torch.Tensor, ranking: list[int]) -> torch.Tensor:
    """InstructGPT's loss for ONE prompt: −1/C(K,2) Σ_{w ≻ l} log σ(r_w − r_l) over all pairs of the ranking.

    rewards: (K,) scores of the prompt's K completions; ranking[i] is the rank of completion i (0 = best).
    """
    pairs = ranking_pairs(ranking)
    w = torch.tensor([p[0] for p in pairs], device=rewards.device)
    lo = torch.tensor([p[1] for p in pairs], device=rewards.device)
    return bradley_terry_loss(rewards[w], rewards[lo]).mean()


def pair_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                  label: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct, decided): pairs whose reward order agrees with the label's side, and pairs that have one.

    A pair with μ > 0.5 (or no label) is correct when r_c > r_r, one with μ < 0.5 when r_c < r_r;
    ties (μ = 0.5) are not counted. Equal rewards count as wrong, as in TRL.
    """
    delta = chosen_rewards.float() - rejected_rewards.float()
    if label is None:
        return (delta > 0).sum(), torch.tensor(delta.numel(), device=delta.device)
    mu = label.float()
    correct = ((mu > 0.5) & (delta > 0)) | ((mu < 0.5) & (delta < 0))
    return correct.sum(), (mu != 0.5).sum()
