"""Advantage estimators for online RL: pure tensor functions (no models, no I/O, no config objects).

Outcome (one reward per completion, (N,) laid out group-major: group g is rows g·G … g·G+G−1):

    group_advantages        GRPO  (r − mean_g) / (std + ε)     S3 L2490-2527, S0 L605-620
                            Dr.GRPO  r − mean_g                S3 L3688-3733; S3 L587, S4 L312-314
    rloo_advantages         r_i − mean_{j≠i} r_j               (not in the seeds; Ahmadian et al. 2024)
    reinforce_advantages    r − b, b = batch / group mean      S3 L137-170, S1 L349-394

Per token ((B, T) with a 0/1 mask of the completion tokens):

    reinforce_plus_plus_advantages   whitened discounted returns-to-go (Hu 2025; not in the seeds)
    gae                              δ_t = r_t + γV_{t+1} − V_t, Â_t = δ_t + γλÂ_{t+1}  S3 L726-795, L1764-1775
    whiten                           masked (x − mean) / (std + ε)                     S3 L1395-1399

Masks: the per-token recursions (returns-to-go, GAE) run over the valid tokens only; a masked
position inside a row (e.g. a tool's output between two turns) is skipped, so each valid token is
linked to the next valid one, and every masked position comes out as 0. With right padding this is
the textbook recursion with V = 0 and r = 0 beyond the last valid token.

Missing rewards: a NaN reward (a reward function that returned None) is left out of every mean and
std, and its own advantage is 0 — TRL's convention, so such a completion never moves the policy.

Batch statistics (scale="batch", `whiten`, REINFORCE++, RLOO's `normalize`) are over the tensor
passed in: under data parallelism, pass the whole step's gathered rewards (as TRL does) so every
rank computes the same advantages, then keep this rank's slice.
"""

from __future__ import annotations

import torch

GROUP_SCALES = ("group", "batch", "none")
REINFORCE_BASELINES = ("mean", "none")


def _check_rewards(rewards: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """`rewards` as a float tensor after shape / group-size checks."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (N,), got shape {tuple(rewards.shape)}")
    if group_size is not None:
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        if rewards.numel() % group_size:
            raise ValueError(f"{rewards.numel()} rewards do not split into groups of group_size={group_size}")
    return rewards if rewards.is_floating_point() else rewards.float()


def _check_tokens(mask: torch.Tensor, **tensors: torch.Tensor) -> None:
    if mask.dim() != 2:
        raise ValueError(f"mask must be 2-D (B, T), got shape {tuple(mask.shape)}")
    for name, t in tensors.items():
        if t.shape != mask.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)} but mask has shape {tuple(mask.shape)}")


def _masked_mean_std(x: torch.Tensor, valid: torch.Tensor, dim, unbiased: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of x over `valid` entries along `dim` (kept). Fewer entries than the correction
    needs (one, for the unbiased std) give std 0, where TRL gives NaN and then zeroes the advantage."""
    count = valid.sum(dim, keepdim=True).to(x.dtype)
    mean = torch.where(valid, x, 0).sum(dim, keepdim=True) / count.clamp_min(1)
    sq = torch.where(valid, (x - mean) ** 2, 0).sum(dim, keepdim=True)
    var = sq / (count - 1 if unbiased else count).clamp_min(1)
    return mean, var.sqrt()


def _batch_mean_std(x: torch.Tensor, valid: torch.Tensor, unbiased: bool, reduce=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over every valid entry of x; with `reduce` (a sum of a list of floats over all
    processes, `posttrain.ranks.all_reduce_sum`), over every process's entries: two processes get the
    statistic of one process holding both batches. Two reductions (count and sum, then squared
    deviations from the global mean), in float64."""
    if reduce is None:
        return _masked_mean_std(x, valid, None, unbiased)
    count, total = reduce([float(valid.sum()), float(torch.where(valid, x.double(), 0).sum())])
    mean = total / max(count, 1.0)
    squares = reduce([float(torch.where(valid, (x.double() - mean) ** 2, 0).sum())])[0]
    var = squares / max(count - 1 if unbiased else count, 1.0)
    return x.new_tensor(mean), x.new_tensor(var ** 0.5)


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4,
                     unbiased: bool = True, reduce=None) -> torch.Tensor:
    """Group-relative advantages of GRPO and its variants, (N,) → (N,).

        Â_i = (r_i − mean_g(r)) / (std + ε)    scale="group": std over the completion's group (GRPO,
                                               S3 L2490-2527 eq. "Â_{i,t} = (r_i − mean(r))/std(r)")
                                               scale="batch": std over the whole batch (Liu et al.'s
                                               "batch" scaling, TRL `scale_rewards="batch"`)
        Â_i = r_i − mean_g(r)                  scale="none": Dr.GRPO (S3 L3688-3733), no std

    The mean is always the group's. `unbiased=True` (Bessel, divide by n − 1) is TRL GRPOTrainer's
    convention, so results match TRL 1.16 to float rounding; seed S0 eq. 30 (L616) uses the
    population std σ = sqrt(1/G Σ (r − μ)²): pass `unbiased=False` for it. The seeds (S3) divide by
    std alone; ε (TRL's 1e-4) only guards the division.

    A group whose rewards are all equal gets advantage exactly 0 (its float mean can be an ulp off
    the common value, so it is zeroed explicitly, never divided by a ~0 std): it carries no signal,
    which is what DAPO's dynamic sampling filters out (S3 L2815).

    `reduce` (e.g. `posttrain.ranks.all_reduce_sum`): the batch std of scale="batch" is taken over
    every process's rewards (groups never span processes, so the group statistics need nothing).
    """
    if scale not in GROUP_SCALES:
        raise ValueError(f"scale must be one of {GROUP_SCALES}, got {scale!r}")
    r = _check_rewards(rewards, group_size)
    valid = ~torch.isnan(r)
    grouped, gvalid = r.view(-1, group_size), valid.view(-1, group_size)
    mean, std = _masked_mean_std(grouped, gvalid, 1, unbiased)
    adv = grouped - mean
    if scale == "batch":
        _, std = _batch_mean_std(r, valid, unbiased, reduce)
    if scale != "none":
        adv = adv / (std + eps)
    hi = torch.where(gvalid, grouped, -torch.inf).amax(1, keepdim=True)
    lo = torch.where(gvalid, grouped, torch.inf).amin(1, keepdim=True)
    adv = torch.where(gvalid & (hi != lo), adv, 0)
    return adv.reshape(-1)


def rloo_advantages(rewards: torch.Tensor, group_size: int, normalize: bool = False, eps: float = 1e-4) -> torch.Tensor:
    """REINFORCE leave-one-out (RLOO, Ahmadian et al. 2024; no seed gives it), (N,) → (N,).

        Â_i = r_i − 1/(G−1) Σ_{j≠i} r_j  =  G/(G−1) · (r_i − mean_g(r))

    Each completion's baseline is the mean of its G − 1 siblings, so it is independent of the
    completion itself and the estimate is unbiased. `normalize=True` then whitens the advantages
    over the batch, (Â − mean) / (std + ε) with the unbiased std (TRL RLOOTrainer's
    `normalize_advantages`). NaN rewards are left out of the siblings' mean (divisor: the group's
    scorable count − 1) and get advantage 0; so does a lone scorable completion, and neither
    enters the normalization's mean and std.
    """
    if group_size < 2:
        raise ValueError(f"RLOO needs group_size >= 2 (a leave-one-out baseline needs a sibling), got {group_size}")
    r = _check_rewards(rewards, group_size)
    valid = ~torch.isnan(r)
    grouped, gvalid = torch.where(valid, r, 0).view(-1, group_size), valid.view(-1, group_size)
    count = gvalid.sum(1, keepdim=True).to(r.dtype)
    baseline = (grouped.sum(1, keepdim=True) - grouped) / (count - 1).clamp_min(1)
    has_baseline = (gvalid & (count > 1)).reshape(-1)
    adv = (grouped - baseline).reshape(-1)
    if normalize:  # over the completions that have a baseline only, as TRL
        mean, std = _masked_mean_std(adv, has_baseline, 0, unbiased=True)
        adv = (adv - mean) / (std + eps)
    return torch.where(has_baseline, adv, 0)


def reinforce_advantages(rewards: torch.Tensor, group_size: int | None = None, baseline: str = "mean",
                         reduce=None) -> torch.Tensor:
    """REINFORCE with a baseline, (N,) → (N,) (S3 L137-170, L616-627; S1 L349-394):

        ∇J = E[∇ log π(a|s) (R − b)],   b = mean of the batch (or of the group, given group_size),
                                        or b = 0 (baseline="none", the plain Monte Carlo estimate)

    With a group mean baseline this equals `group_advantages(..., scale="none")` (Dr.GRPO). `reduce`
    (e.g. `posttrain.ranks.all_reduce_sum`): the batch mean is over every process's rewards.
    """
    if baseline not in REINFORCE_BASELINES:
        raise ValueError(f"baseline must be one of {REINFORCE_BASELINES}, got {baseline!r}")
    r = _check_rewards(rewards, group_size)
    valid = ~torch.isnan(r)
    if baseline == "none":
        return torch.where(valid, r, 0)
    if group_size is None:
        mean, _ = _batch_mean_std(r, valid, False, reduce)
        return torch.where(valid, r - mean, 0)
    rows = r.view(-1, group_size)
    mean, _ = _masked_mean_std(rows, valid.view(rows.shape), 1, unbiased=False)
    return torch.where(valid, (rows - mean).reshape(-1), 0)


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8, reduce=None) -> torch.Tensor:
    """Masked whitening over every valid token of the batch (S3 L1395-1399, the PPO pseudocode):

        μ = Σ m·x / Σ m,   σ² = Σ m·(x − μ)² / Σ m,   x̂ = (x − μ) / (σ + ε)

    σ² is the population variance, as in the seed (TRL's `masked_whiten` uses Bessel's n − 1 and
    rsqrt(σ² + ε); the two differ by a factor sqrt(n/(n−1))). `shift_mean=False` rescales only,
    x̂ = (x − μ)/(σ + ε) + μ, keeping the mean (TRL's option, used for rewards). Float32 out;
    masked positions are 0; an all-masked input gives all zeros. `reduce` (e.g.
    `posttrain.ranks.all_reduce_sum`): μ and σ over every process's valid tokens.
    """
    _check_tokens(mask, values=values)
    x, valid = values.float(), mask.bool()
    mean, std = _batch_mean_std(x, valid, False, reduce)
    out = (x - mean) / (std + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(valid, out, 0)


def _reverse_scan(mask: torch.Tensor, init: tuple[torch.Tensor, ...], step) -> torch.Tensor:
    """Run `carry = step(t, carry)` from the last column to the first over the valid tokens, starting
    from `init` (the state beyond the end); masked positions keep the carry and output 0. The first
    element of the carry is the output. Returns the (B, T) outputs in float32."""
    valid = mask.bool()
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    carry = init
    for t in reversed(range(mask.shape[1])):
        carry = tuple(torch.where(valid[:, t], n, c) for n, c in zip(step(t, carry), carry))
        out[:, t] = torch.where(valid[:, t], carry[0], 0)
    return out


def discounted_returns(token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Returns-to-go over the valid tokens: G_t = r_t + γ G_{t'}, t' the next valid token (S3 L137-170,
    R_t = Σ_{k≥t} γ^{k−t} r_k). (B, T) → (B, T), masked positions 0."""
    _check_tokens(mask, token_rewards=token_rewards)
    r = token_rewards.float()
    zero = torch.zeros(r.shape[0], device=r.device)
    return _reverse_scan(mask, (zero,), lambda t, carry: (r[:, t] + gamma * carry[0],))


def reinforce_plus_plus_advantages(token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
                                   reduce=None) -> torch.Tensor:
    """REINFORCE++ (Hu 2025; not in the seeds): whitened returns-to-go of the per-token rewards.

        G_t = Σ_{k≥t} γ^{k−t} r_k,      Â_t = (G_t − μ) / (σ + ε),   μ, σ over all valid tokens of the batch

    `token_rewards` already include the KL penalty, r_t = −β k1_t (+ the score at the last token):
    build them with `posttrain.losses.ppo.kl_penalized_rewards`. The global (batch) whitening replaces
    a critic or a per-prompt baseline. (B, T) → (B, T), masked positions 0.
    """
    return whiten(discounted_returns(token_rewards, mask, gamma), mask, reduce=reduce)


def gae(token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (S3 L726-795, L1764-1775; SEED_NOTES 1.3), right to left:

        δ_t = r_t + γ V(s_{t+1}) − V(s_t),        Â_t = δ_t + γλ Â_{t+1}   (= Σ_l (γλ)^l δ_{t+l})
        returns R_t = Â_t + V(s_t)                (the value-function target)

    with V = 0 and Â = 0 beyond the last valid token (the episode ends there). λ = 0 gives the
    one-step TD error δ_t; λ = 1 gives the Monte Carlo return minus V, Σ_k γ^{k−t} r_k − V_t; with
    γ = λ = 1 and only a final reward R this is the seed's bandit form A_t = R − V(s_t) (S3 L1773,
    and the PPO pseudocode's `rewards_per_token - values`, S3 L1390). λ is "typically 0.9–0.97",
    0.95 in the seed's table (S3 L760, L1081). Returns (advantages, returns), both (B, T), computed
    without gradient in float32, masked positions 0.
    """
    _check_tokens(mask, token_rewards=token_rewards, values=values)
    r, v = token_rewards.detach().float(), values.detach().float()
    zero = torch.zeros(r.shape[0], device=r.device)

    def step(t, carry):  # carry = (Â_{t'}, V_{t'}) of the next valid token t'
        next_adv, next_value = carry
        return r[:, t] + gamma * next_value - v[:, t] + gamma * lam * next_adv, v[:, t]

    advantages = _reverse_scan(mask, (zero, zero), step)
    returns = torch.where(mask.bool(), advantages + v, 0)
    return advantages, returns
