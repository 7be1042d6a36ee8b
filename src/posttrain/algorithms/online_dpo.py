"""Online DPO per batch (TRL's OnlineDPO; online DAP: DPO, IPO, SLiC), and BPO.

    posttrain online_dpo model=runs/sft/final dataset=task:sentiment reward_funcs=[task]
    posttrain online_dpo --preset online_ipo model=... dataset=prompts.jsonl reward_funcs=[reward_model:path=runs/rm/final]
    posttrain online_dpo --preset bpo model=... dataset=task:sentiment

Every generation round samples `num_generations` (2) completions per prompt from the current policy,
scores them with the reward functions GRPO uses (programs, a reward model, a judge: `reward_funcs`),
and the `preference` estimator (online/estimators.py) labels the best-rewarded one chosen and the
worst rejected. A prompt whose two completions tie has no preference and is left out of the loss
(`pairs/ties`); `dynamic_sampling=true` replaces such prompts with fresh ones. TRL instead counts a
tie with the first completion as chosen. The loss is the preference loss of the offline stage
(losses/preference.py: sigmoid = DPO, ipo = IPO, hinge = SLiC) on the summed completion log-probs of
the policy and the anchor, both at the sampling temperature (logits / T; TRL's T = 1 log-probs are
ours with temperature=1).

The anchor of the KL trust region (`reference`):
  initial    π_ref, a frozen copy of the starting policy (the adapter-disabled base under LoRA).
  behaviour  BPO (Xu et al. 2024): π_β, the policy that sampled the data, so the
             trust region moves with training. With behaviour_refresh_steps=0 π_β is each round's
             sampler: its rollout log-probs are the anchor (no second model, no extra forward), and
             it is refreshed every num_iterations x num_minibatches optimizer steps. A multiple K of
             that keeps a frozen snapshot refreshed every K steps (logged: behaviour/refreshes).
             Refreshed every step, π_β is the policy itself (Δ = 0): no trust region at all; the
             `bpo` preset refreshes every 10 steps.

The algorithm is online/algorithm.py's OnlineRL with this loss: the rollout, reward, packing, ranks,
checkpoint and logging code are GRPO's. Logged as TRL does: rewards/chosen, rewards/rejected,
rewards/margins, rewards/accuracies (implicit rewards β log π/π_anchor), logps/chosen, logps/rejected,
kl/sequence_k1 (Σ_t log π_θ/π_anchor per completion, mean), plus reward/mean of the samples (the number that should rise).
"""

from __future__ import annotations

import contextlib
import copy
import sys
from dataclasses import dataclass

import torch

import posttrain.ranks as ranks
from posttrain.algorithms.dpo import pair_metrics
from posttrain.algorithms.grpo import load_prompts, train_online
from posttrain.config import option
from posttrain.errors import ConfigError
from posttrain.losses.preference import PairLogps, PreferenceParams, preference_loss
from posttrain.models.reference import ReferencePolicy
from posttrain.online.algorithm import OnlineRL
from posttrain.online.experience import policy_outputs
from posttrain.online.options import RolloutOptions, reject_unread
from posttrain.options import output_dir_option, restate
from posttrain.train.scaffold import load_model_for

ONLINE_LOSSES = ("sigmoid", "ipo", "hinge")


@dataclass
class OnlineDPOConfig(RolloutOptions):
    output_dir: str = output_dir_option("online_dpo")
    learning_rate: float = option(5e-7, "Peak learning rate (AdamW); TRL's OnlineDPO default 5e-7.")
    batch_size: int = restate(RolloutOptions, "batch_size", "Samples per micro-batch, rounded up to whole prompts (a multiple of num_generations): a pair is never split.")
    num_generations: int = restate(RolloutOptions, "num_generations", "Completions per prompt: the best and the worst by reward form its pair (TRL: 2).", default=2)
    beta: float = option(0.1, "β: the KL strength of the preference loss (IPO's target margin is 1/(2β); SLiC's hinge margin is 1/β).")
    loss_type: str = option("sigmoid", "Preference loss: sigmoid (DPO), ipo (online IPO), hinge (SLiC).", choices=ONLINE_LOSSES)
    reference: str = option("initial", "Anchor of the KL trust region: initial (frozen starting policy) or behaviour (BPO: the policy that sampled, refreshed).", choices=("initial", "behaviour"))
    behaviour_refresh_steps: int = option(0, "reference=behaviour: refresh π_β every K optimizer steps, a multiple of num_iterations x num_minibatches (0: every round, the sampler's own log-probs).")

    def validate(self) -> None:
        super().validate()
        if self.num_generations < 2:
            raise ConfigError(f"online DPO compares completions of the same prompt: num_generations must be >= 2, got {self.num_generations}")
        if self.prompts_per_step % self.num_minibatches:
            raise ConfigError(f"a pair must stay in one optimizer step: prompts_per_step ({self.prompts_per_step}) must be a multiple "
                              f"of num_minibatches ({self.num_minibatches})")
        if self.beta <= 0:
            raise ConfigError(f"beta must be > 0, got {self.beta}")
        if self.behaviour_refresh_steps < 0 or self.behaviour_refresh_steps % self.steps_per_round:
            raise ConfigError(f"behaviour_refresh_steps must be 0 or a multiple of the {self.steps_per_round} optimizer steps of a round "
                              f"(num_iterations x num_minibatches): π_β is refreshed when a round is sampled; got {self.behaviour_refresh_steps}")
        reject_unread(self)

    def unread(self) -> dict[str, str]:
        out = super().unread()
        if self.reference != "behaviour":
            out["behaviour_refresh_steps"] = "with reference=behaviour"
        return out

    @property
    def steps_per_round(self) -> int:
        return self.num_iterations * self.num_minibatches

    # what the shared online parts read (online.algorithm, online.maker)
    advantage = "preference"
    tis_cap = 0.0


PRESETS: dict[str, dict] = {
    "online_dpo": {"loss_type": "sigmoid", "beta": 0.1, "reference": "initial"},  # TRL OnlineDPOConfig defaults
    "online_ipo": {"loss_type": "ipo", "beta": 0.1, "reference": "initial"},  # Calandriello et al. 2024 (S3 L3380-3386)
    "online_slic": {"loss_type": "hinge", "beta": 1.0, "reference": "initial"},
    # Xu et al. 2024 (S3 L3545-3571): π_β refreshed every K = T/F steps; refreshed every step (K = 0 with
    # one-step rounds) it is the policy itself, Δ = 0, and nothing holds the policy back (bench: KL 335)
    "bpo": {"loss_type": "sigmoid", "beta": 0.1, "reference": "behaviour", "behaviour_refresh_steps": 10},
}


class OnlineDPO(OnlineRL):
    """OnlineRL whose loss is a preference loss on each prompt's (chosen, rejected) pair."""

    whole_groups = True  # the online source keeps a prompt's samples in one micro-batch

    def __init__(self, config: OnlineDPOConfig, tokenizer, rewards):
        super().__init__(config, tokenizer, rewards)
        self.params = PreferenceParams(beta=config.beta)

    def reference_for(self, model):
        cfg = self.config
        if cfg.reference == "initial":
            return ReferencePolicy(model)
        rounds = cfg.behaviour_refresh_steps // cfg.steps_per_round
        return BehaviourSnapshot(model, rounds) if rounds > 1 else None  # None: the rollout log-probs are π_β's

    def batch_weight(self, batch: dict) -> float:
        return float((batch["advantages"].view(-1, self.config.num_generations).amax(-1) > 0).sum())

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        cfg, G = self.config, self.config.num_generations
        out = policy_outputs(model, batch, cfg.temperature)
        completion = batch["completion_mask"].float()
        policy = (out.logps * completion).sum(-1)
        anchor = (batch.get("ref_logps", batch["old_logps"]) * completion).sum(-1)  # π_ref, or π_β's rollout log-probs
        labels = batch["advantages"].view(-1, G)
        decided = labels.amax(-1) > 0
        first = torch.arange(labels.shape[0], device=labels.device)[decided] * G
        chosen, rejected = first + labels[decided].argmax(-1), first + labels[decided].argmin(-1)
        tokens = completion.sum(-1)
        pairs = PairLogps(policy[chosen], policy[rejected], anchor[chosen], anchor[rejected], tokens[chosen], tokens[rejected])
        losses = preference_loss(pairs, self.params, [cfg.loss_type])
        metrics = pair_metrics(pairs, self.params, [cfg.loss_type])
        metrics["pairs/ties"] = (float((~decided).sum()), float(labels.shape[0]))
        metrics["kl/sequence_k1"] = ((policy - anchor).detach().sum(), float(policy.shape[0]))  # TRL's objective/kl: to the anchor
        if isinstance(getattr(self.experience, "reference", None), BehaviourSnapshot):
            metrics["behaviour/refreshes"] = (float(self.experience.reference.refreshes), 1.0)
        return losses.sum() + 0.0 * policy.sum(), metrics  # 0 x policy: a batch of ties still has a graph to backpropagate

    def state_dict(self) -> dict:
        snapshot = self.experience.reference if self.experience is not None else None
        return {**super().state_dict(), **(snapshot.state_dict() if isinstance(snapshot, BehaviourSnapshot) else {})}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if isinstance(self.experience.reference, BehaviourSnapshot):
            self.experience.reference.load_state_dict(state)


class BehaviourSnapshot:
    """BPO's π_β when it is older than a round: a frozen copy of the policy, refreshed from it on every
    `rounds`-th round (the experience maker scores each round's samples with it once, at `scoring`).
    Under FSDP the refresh gathers the shards: every process calls it at the same point."""

    def __init__(self, policy, rounds: int):
        self.frozen = copy.deepcopy(policy).eval()
        self.frozen.requires_grad_(False)
        self.rounds, self.calls, self.refreshes = rounds, 0, 0

    def scoring(self, policy, device):
        if self.calls % self.rounds == 0:
            with torch.no_grad():
                self.frozen.load_state_dict({k: ranks.full_tensor(v) for k, v in policy.state_dict().items()})
            self.refreshes += 1
            if ranks.is_main():
                print(f"posttrain: behaviour policy refreshed from the policy (round {self.calls + 1}, refresh {self.refreshes})",
                      file=sys.stderr, flush=True)
        self.calls += 1
        if next(self.frozen.parameters()).device != device:
            self.frozen.to(device)
        return contextlib.nullcontext(self.frozen)

    def state_dict(self) -> dict:
        return {"behaviour_calls": self.calls, "behaviour_refreshes": self.refreshes,
                "behaviour_weights": {k: v.detach().cpu() for k, v in self.frozen.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        if "behaviour_weights" in state:
            self.calls, self.refreshes = state["behaviour_calls"], state["behaviour_refreshes"]
            self.frozen.load_state_dict(state["behaviour_weights"])


def run_online_dpo(config: OnlineDPOConfig) -> dict:
    """Train and save to output_dir; returns the last logged metrics."""
    tokenizer, rows, rewards = load_prompts(config)
    return train_online(config, OnlineDPO(config, tokenizer, rewards), rows, tokenizer,
                        build_model=lambda: load_model_for(config, device="cpu"))
