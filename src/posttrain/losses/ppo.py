"""PPO-RLHF pieces other than the clipped policy loss: the KL-penalised token reward, the (clipped)
value loss, explained variance, entropy, and KL-coefficient controllers. The KL estimators
(`kl_estimate`, `KL_ESTIMATORS`) live in `posttrain.losses.kl`.

Pure tensor functions (no models, no I/O, no config objects). Token tensors are (B, T) over the
completion tokens with a 0/1 `mask`; every per-token output is 0 where mask is 0. Losses return
SUMS over the valid tokens: the training loop divides by the token count of the whole optimizer
step, so gradient accumulation over micro-batches and ranks is exact (src/posttrain/train/loop.py).

The clipped policy loss lives in `posttrain.losses.policy`; advantages in `posttrain.losses.advantages`.
"""

from __future__ import annotations

import torch

from posttrain.losses.advantages import _check_tokens
from posttrain.losses.kl import kl_estimate

KL_PLACEMENTS = ("every_token", "last")
KL_CONTROL_MODES = ("proportional", "double_halve")


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Column of each row's last valid token, (B,) long. A row with no valid token is an error."""
    valid = mask.bool()
    if not valid.any(1).all():
        empty = torch.nonzero(~valid.any(1)).flatten().tolist()
        raise ValueError(f"rows {empty} have no valid token; every completion needs at least one (e.g. its EOS)")
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(valid, positions, -1).amax(1)


def kl_penalized_rewards(scores: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor,
                         kl_coef: float, placement: str = "every_token", estimator: str = "k1") -> torch.Tensor:
    """InstructGPT's per-token reward with the KL penalty inside it (S3 L1174-1197, L2538-2552), (B, T):

        placement="every_token":   r_t = −β kl_t  at every valid token, + score(x, y) at the last one
        placement="last":          r_T = score(x, y) − β Σ_t kl_t  at the last valid token, 0 elsewhere

    with kl_t = log π(y_t) − log π_ref(y_t) (k1; `estimator` picks another of `losses.kl.KL_ESTIMATORS`).
    Both give the sequence-level augmented reward r̃ = r_φ(x, y) − β log π(y|x)/π_ref(y|x) of S3
    L1192 as their sum, so with γ = 1 every return-to-go from the first token is the same; they
    differ in how credit reaches each token through GAE. β "typically 0.01–0.02" (S3 L1186).
    The rewards are a rollout quantity: computed from detached log-probs, no gradient.
    """
    if placement not in KL_PLACEMENTS:
        raise ValueError(f"placement must be one of {KL_PLACEMENTS}, got {placement!r}")
    if scores.dim() != 1 or scores.shape[0] != mask.shape[0]:
        raise ValueError(f"scores must be (B,) = ({mask.shape[0]},), got shape {tuple(scores.shape)}")
    kl = kl_estimate(logps.detach().float(), ref_logps.detach().float(), mask, estimator)
    last = last_token_index(mask).unsqueeze(1)
    if placement == "every_token":
        rewards = -kl_coef * kl
        final = rewards.gather(1, last) + scores.detach().float().unsqueeze(1)
    else:
        rewards = torch.zeros_like(kl)
        final = scores.detach().float().unsqueeze(1) - kl_coef * kl.sum(1, keepdim=True)
    return rewards.scatter(1, last, final)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip_range: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The critic's regression loss, summed over valid tokens: (loss_sum, clip_fraction_sum).

        unclipped:  L = ½ Σ_t (V_t − R_t)²                                         (S3 L789, L1249-1258)
        clipped:    L = ½ Σ_t max((V_t − R_t)², (V^clip_t − R_t)²),
                    V^clip_t = V^old_t + clip(V_t − V^old_t, −c, c)                 (PPO2 / TRL / OpenRLHF)

    R_t are the GAE returns (`advantages.gae`) or, in the seed's bandit form, the final reward
    (S3 L711-716). The ½ is the anchors' convention; the seed's c_v = 0.5 (S3 L1257) is the weight
    of this loss in the total L_PPO + c_v L_V − c_e H and is applied by the caller, not here. The seed
    itself does not clip the value (SEED_NOTES 5.1). clip_fraction_sum counts the valid tokens whose
    clipped term is the larger (the ones where clipping cut the gradient); 0 when clip_range is None.
    Divide both by the step's token count.
    """
    _check_tokens(mask, values=values, old_values=old_values, returns=returns)
    v, r, valid = values.float(), returns.detach().float(), mask.bool()
    unclipped = (v - r) ** 2
    if clip_range is None:
        per_token, clipped_more = unclipped, torch.zeros_like(unclipped, dtype=torch.bool)
    else:
        old = old_values.detach().float()
        clipped = (old + torch.clamp(v - old, -clip_range, clip_range) - r) ** 2
        # only where the clamp acts: old + (V − old) can differ from V by an ulp
        per_token = torch.maximum(unclipped, clipped)
        clipped_more = ((v - old).abs() > clip_range) & (clipped > unclipped)
    loss_sum = 0.5 * torch.where(valid, per_token, 0).sum()
    clip_fraction_sum = (clipped_more & valid).sum().float()
    return loss_sum, clip_fraction_sum


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 − Var[R − V] / Var[R] over the valid tokens (population variances): 1 is a perfect critic,
    0 no better than a constant, < 0 worse. NaN when the returns have no variance (or no valid token)."""
    _check_tokens(mask, values=values, returns=returns)
    valid = mask.bool()
    v, r = values.detach().double()[valid], returns.detach().double()[valid]
    if r.numel() == 0:
        return float("nan")
    var_r = r.var(unbiased=False)
    if var_r == 0:
        return float("nan")
    return float(1 - (r - v).var(unbiased=False) / var_r)


def entropy_from_logits(logits: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """Entropy of the softmax over the last axis, H = −Σ_a p_a log p_a = logsumexp(z) − Σ_a p_a z_a,
    (..., V) → (...), float32, differentiable. The entropy bonus of S3 L1260-1268 (c_e = 0.01, S3
    L1082) and the monitor of DAPO / GRPO+ (S3 L2812, L2874-2879). Rows are processed `chunk_size` at
    a time so the float32 copy of a bf16 (tokens × vocab) tensor never exists at once; −inf logits
    (masked vocabulary) contribute 0."""
    flat = logits.reshape(-1, logits.shape[-1])
    parts = [entropy_of_log_probs(torch.log_softmax(chunk.float(), dim=-1)) for chunk in flat.split(chunk_size)]
    out = torch.cat(parts) if parts else flat.new_zeros(0, dtype=torch.float32)
    return out.reshape(logits.shape[:-1])


def entropy_of_log_probs(log_probs: torch.Tensor) -> torch.Tensor:
    """H = −Σ_a p_a log p_a from a normalised log-softmax (..., V) → (...), differentiable; 0·log 0 = 0,
    not NaN. For callers that already hold the log-probs (the policy's forward pass: its gradient then
    flows through the same log-softmax as the token log-probs'); `entropy_from_logits` otherwise."""
    p = log_probs.exp()
    return -torch.where(p > 0, p * log_probs, 0).sum(-1)


class FixedKLController:
    """A constant KL coefficient β (the seed's β = 0.02, S3 L1325). Same interface as the adaptive one."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """An adaptive KL coefficient β that steers the measured KL toward `target_kl`.

    mode="proportional" (Ziegler et al. 2019, as in TRL's old PPOTrainer and OpenRLHF):

        e = clip(KL / KL_target − 1, −0.2, 0.2),      β ← β · (1 + e · n_steps / horizon)

    where n_steps is the number of samples (or steps) the KL was measured over, so β moves by at
    most 20 % per `horizon` samples.

    mode="double_halve" (PPO-penalty, Schulman et al. 2017; S3 L1022-1030, L1093-1096):

        KL > 1.5 · KL_target  →  β ← 2β;       KL < KL_target / 1.5  →  β ← β / 2;   else unchanged

    (`horizon` and n_steps are unused there). Llama 4's "adaptive KL penalty from running
    divergence estimates" (S3 L2016-2044) gives no rule. `state_dict` / `load_state_dict` carry β, so
    a resumed run continues with exactly the coefficient it stopped with.
    """

    def __init__(self, init_kl_coef: float, target_kl: float, horizon: int = 10000, mode: str = "proportional"):
        if mode not in KL_CONTROL_MODES:
            raise ValueError(f"mode must be one of {KL_CONTROL_MODES}, got {mode!r}")
        if target_kl <= 0:
            raise ValueError(f"target_kl must be > 0, got {target_kl}")
        if horizon <= 0:
            raise ValueError(f"horizon must be > 0, got {horizon}")
        self.value, self.target, self.horizon, self.mode = float(init_kl_coef), float(target_kl), int(horizon), mode

    def update(self, current_kl: float, n_steps: int) -> float:
        """Update β from the KL measured over the last `n_steps` and return the new β."""
        current_kl = float(current_kl)
        if self.mode == "proportional":
            error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon
        elif current_kl > 1.5 * self.target:
            self.value *= 2.0
        elif current_kl < self.target / 1.5:
            self.value /= 2.0
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value, "target": self.target, "horizon": self.horizon, "mode": self.mode}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])
        self.target, self.horizon = float(state.get("target", self.target)), int(state.get("horizon", self.horizon))
        self.mode = state.get("mode", self.mode)
