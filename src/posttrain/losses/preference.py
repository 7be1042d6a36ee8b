"""The direct preference family: per-pair losses from per-sequence log-probs.

Every function takes a `PairLogps` (policy and reference log-probs of the chosen y_w and rejected y_l
completions, each the SUM of token log-probs, seed 003 L2277, plus token counts) and a
`PreferenceParams`, and returns one loss per pair. Notation:

    ρ_w = log π_θ(y_w|x) − log π_ref(y_w|x),   ρ_l = log π_θ(y_l|x) − log π_ref(y_l|x),   Δ = ρ_w − ρ_l

and the implicit reward of a completion is β ρ (seed 003 L2249). `preference_loss` combines several
loss types with weights, as TRL's list-valued `loss_type` does. Reference-free losses (simpo, orpo,
cpo, sft) never read the reference fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PairLogps:
    policy_chosen: torch.Tensor  # (B,) sum of log π_θ over y_w's tokens
    policy_rejected: torch.Tensor
    ref_chosen: torch.Tensor | None = None  # (B,) sum of log π_ref; None for reference-free losses
    ref_rejected: torch.Tensor | None = None
    chosen_tokens: torch.Tensor | None = None  # (B,) |y_w|, for length-normalised losses
    rejected_tokens: torch.Tensor | None = None
    label: torch.Tensor | None = None  # (B,) μ = P(y_w ≻ y_l): 1 hard, 0.5 tie (sigmoid only)

    @property
    def chosen_logratios(self) -> torch.Tensor:
        return self.policy_chosen - self.ref_chosen

    @property
    def rejected_logratios(self) -> torch.Tensor:
        return self.policy_rejected - self.ref_rejected

    @property
    def delta(self) -> torch.Tensor:
        return self.chosen_logratios - self.rejected_logratios

    def mean_logps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(1/|y|) log π_θ(y|x) for chosen and rejected."""
        return self.policy_chosen / self.chosen_tokens.clamp(min=1), self.policy_rejected / self.rejected_tokens.clamp(min=1)


@dataclass
class PreferenceParams:
    beta: float = 0.1
    label_smoothing: float = 0.0  # ε of cDPO / robust DPO
    simpo_gamma: float = 0.5  # γ: SimPO's target reward margin
    orpo_lambda: float = 0.1  # λ weighting ORPO's odds-ratio term against its SFT term
    discopop_tau: float = 0.05


def sigmoid(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """DPO (seed 000 eq. 21-25; seed 003 L2081-2353), with cDPO label smoothing and soft labels:

        ℓ = −q log σ(βΔ) − (1 − q) log σ(−βΔ),   q = μ(1 − ε) + (1 − μ) ε

    μ = 1, ε = 0 gives DPO's −log σ(βΔ); ε > 0 is conservative DPO (labels flipped with prob. ε);
    μ = 0.5 is a tie (seed 002's soft Bradley–Terry labels carried over to the implicit reward)."""
    q = 1.0 - c.label_smoothing if p.label is None else p.label * (1 - c.label_smoothing) + (1 - p.label) * c.label_smoothing
    logits = c.beta * p.delta
    return -q * F.logsigmoid(logits) - (1 - q) * F.logsigmoid(-logits)


def hinge(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """SLiC-HF's calibration hinge on the log-ratio margin (Zhao et al. 2023; seed 003 L3238):
    ℓ = max(0, 1 − βΔ)  (β = 1/δ, the inverse of SLiC's margin δ)."""
    return torch.relu(1 - c.beta * p.delta)


def ipo(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """IPO (Azar et al. 2023, eq. 17; seed 003 L3231 gives no formula): ℓ = (h − 1/(2β))² with
    h = ρ_w/|y_w| − ρ_l/|y_l|. The squared loss regresses the margin to a finite target instead of
    pushing it to infinity, so deterministic preferences do not overfit. The log-ratios are
    per-token averages (as TRL, on the IPO authors' advice), so β does not depend on length."""
    h = p.chosen_logratios / p.chosen_tokens.clamp(min=1) - p.rejected_logratios / p.rejected_tokens.clamp(min=1)
    return (h - 1 / (2 * c.beta)) ** 2


def robust(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """Robust DPO (Chowdhury et al. 2024): an unbiased loss under labels flipped with probability ε,
        ℓ = [(1 − ε)(−log σ(βΔ)) − ε(−log σ(−βΔ))] / (1 − 2ε)."""
    eps, logits = c.label_smoothing, c.beta * p.delta
    return (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)


def simpo(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """SimPO (seed 003 L3573-3597), reference-free and length-normalised:
        ℓ = −log σ(β/|y_w| log π_θ(y_w|x) − β/|y_l| log π_θ(y_l|x) − γ),  β ≈ 2–2.5, γ ≈ 0.5–1.5.
    With ε > 0 the same label smoothing as cDPO applies."""
    chosen, rejected = p.mean_logps()
    logits = c.beta * (chosen - rejected) - c.simpo_gamma
    eps = c.label_smoothing
    return -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)


def orpo(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """ORPO (seed 003 L3348-3378), reference-free, SFT and preference in one stage:
        ℓ = L_SFT + λ L_OR,   L_OR = −log σ(log odds(y_w|x) − log odds(y_l|x)),
        odds(y|x) = P/(1 − P),  log P = (1/|y|) Σ_t log π_θ(y_t|·),  L_SFT = −log P(y_w|x).
    L_SFT is the per-sequence token mean (the paper's form); TRL takes one token mean over the batch."""
    chosen, rejected = p.mean_logps()
    log_odds = (chosen - rejected) - (_log1mexp(chosen) - _log1mexp(rejected))
    return -chosen - c.orpo_lambda * F.logsigmoid(log_odds)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − e^x) for x < 0, accurate at both ends (Mächler 2012): log(−expm1 x) near 0, log1p(−e^x) below −log 2."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def cpo(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """CPO (Xu et al. 2024; seed 003 L3388-3398): reference-free DPO plus a behaviour-cloning term,
        ℓ = −log σ(β log π_θ(y_w|x) − β log π_θ(y_l|x)) + L_NLL(y_w),
    L_NLL the chosen completion's mean token NLL. With ε > 0 the preference term is label-smoothed."""
    logits = c.beta * (p.policy_chosen - p.policy_rejected)
    eps = c.label_smoothing
    return -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits) + sft(p, c)


def sft(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """Negative log-likelihood of the chosen completion, per-token mean: −(1/|y_w|) log π_θ(y_w|x).
    Added to DPO with weight α it is RPO (Pang et al. 2024): `loss_type=[sigmoid, sft]`."""
    return -p.mean_logps()[0]


def apo_zero(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """APO-zero (D'Oosterlinck et al. 2024, eq. 7; seed 003 L2645): push the winner's reward up and
    the loser's down, each on its own:  ℓ = (1 − σ(βρ_w)) + σ(βρ_l)."""
    return (1 - torch.sigmoid(c.beta * p.chosen_logratios)) + torch.sigmoid(c.beta * p.rejected_logratios)


def apo_down(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """APO-down (eq. 8): lower both, the loser more — for when the model is already better than the
    winner:  ℓ = σ(βρ_w) + (1 − σ(βΔ))."""
    return torch.sigmoid(c.beta * p.chosen_logratios) + (1 - torch.sigmoid(c.beta * p.delta))


def bco_pair(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """Pairwise binary classifier optimisation (Jung et al. 2024) without its running reward shift δ:
        ℓ = −log σ(βρ_w) − log σ(−βρ_l)."""
    return -F.logsigmoid(c.beta * p.chosen_logratios) - F.logsigmoid(-c.beta * p.rejected_logratios)


def nca_pair(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """NCA (Chen et al. 2024), pairwise: ℓ = −log σ(βρ_w) − ½ log σ(−βρ_w) − ½ log σ(−βρ_l)."""
    w, l = c.beta * p.chosen_logratios, c.beta * p.rejected_logratios
    return -F.logsigmoid(w) - 0.5 * F.logsigmoid(-w) - 0.5 * F.logsigmoid(-l)


def sppo_hard(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """SPPO with hard win probabilities (Wu et al. 2024, eq. 4.7 with P ∈ {0, 1}):
        ℓ = (ρ_w − 1/(2β))² + (ρ_l + 1/(2β))²."""
    return (p.chosen_logratios - 0.5 / c.beta) ** 2 + (p.rejected_logratios + 0.5 / c.beta) ** 2


def discopop(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """DiscoPOP (Chris Lu et al. 2024, eq. 5; seed 003 L3598): a log-ratio-modulated blend of the
    logistic and exponential losses, with z = βΔ and gate g = σ(z/τ):  ℓ = (1 − g)(−log σ(z)) + g e^{−z}."""
    z = c.beta * p.delta
    gate = torch.sigmoid(z / c.discopop_tau)
    return (1 - gate) * -F.logsigmoid(z) + gate * torch.exp(-z)


def anchor(p: PairLogps, c: PreferenceParams) -> torch.Tensor:
    """MDPO's reward anchor (Wang et al. 2024; seed 003 L3439-3455): keep the chosen implicit reward
    above 0 so DPO cannot widen the margin by lowering log π_θ(y_w):  ℓ = −log σ(βρ_w).
    Added to DPO it is MDPO's text objective, `loss_type=[sigmoid, anchor]` (the `mdpo` preset);
    it is the chosen half of bco_pair."""
    return -F.logsigmoid(c.beta * p.chosen_logratios)


LOSSES = {
    "sigmoid": sigmoid, "hinge": hinge, "ipo": ipo, "robust": robust, "simpo": simpo, "orpo": orpo,
    "cpo": cpo, "sft": sft, "apo_zero": apo_zero, "apo_down": apo_down, "bco_pair": bco_pair,
    "nca_pair": nca_pair, "sppo_hard": sppo_hard, "discopop": discopop, "anchor": anchor,
}
REFERENCE_FREE = frozenset({"simpo", "orpo", "cpo", "sft"})
SOFT_LABELS = frozenset({"sigmoid"})  # the losses that read μ; the others need μ ∈ {0, 1}


# The implicit reward TRL logs for each reference-free loss: (the PreferenceParams field that scales it,
# whether the log-prob is the per-token mean). CPOTrainer logs β·log π (loss_type sigmoid, our cpo) or,
# for simpo, β·mean log π (it averages the log-probs, `average_log_prob=True`); ORPOTrainer logs
# β·mean log π with its β, which is ORPO's λ. So `rewards/accuracies` tracks the loss's own objective.
REFERENCE_FREE_REWARDS = {"simpo": ("beta", True), "orpo": ("orpo_lambda", True), "cpo": ("beta", False),
                          "sft": ("beta", False)}


def implicit_rewards(p: PairLogps, params: PreferenceParams, loss_types: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) implicit rewards per pair, as TRL logs them: β ρ with a reference (DPOTrainer,
    whatever the loss type); without one, those of the first loss type's TRL trainer (sft alone: β log π)."""
    if p.ref_chosen is not None:
        return params.beta * p.chosen_logratios, params.beta * p.rejected_logratios
    leading = next((t for t in loss_types if t != "sft"), "sft")
    scale, per_token = REFERENCE_FREE_REWARDS[leading]
    chosen, rejected = p.mean_logps() if per_token else (p.policy_chosen, p.policy_rejected)
    return getattr(params, scale) * chosen, getattr(params, scale) * rejected


def preference_loss(p: PairLogps, params: PreferenceParams, loss_types: list[str], weights: list[float] | None = None) -> torch.Tensor:
    """Σ_k w_k ℓ_k per pair (B,): several loss types combined, as TRL's list-valued `loss_type`."""
    weights = weights or [1.0] * len(loss_types)
    return sum(w * LOSSES[name](p, params) for name, w in zip(loss_types, weights))
