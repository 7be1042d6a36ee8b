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
             With ref_sync=hard ref_sync_steps=K (models.reference.ReferenceSync, as in dpo / grpo)
             the copy becomes the policy every K optimizer steps (logged: ref_syncs): BPO (Xu et al.
             2024), whose π_β, the policy that sampled the data, is refreshed as training goes;
             the `bpo` preset, K = 10. Not under LoRA (there the reference is the base: no copy).
  behaviour  BPO per round: π_β is each round's sampler and its rollout log-probs are the anchor (no
             second model, no extra forward, LoRA fine), refreshed every num_iterations x
             num_minibatches optimizer steps. With one-step rounds π_β is the policy itself (Δ = 0):
             no trust region at all (bench: KL 335).

The algorithm is online/algorithm.py's OnlineRL with this loss: the rollout, reward, packing, ranks,
checkpoint and logging code are GRPO's. Logged as TRL does: rewards/chosen, rewards/rejected,
rewards/margins, rewards/accuracies (implicit rewards β log π/π_anchor), logps/chosen, logps/rejected,
kl/sequence_k1 (Σ_t log π_θ/π_anchor per completion, mean), plus reward/mean of the samples (the number that should rise).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from posttrain.algorithms.dpo import pair_metrics
from posttrain.algorithms.grpo import load_prompts, train_online
from posttrain.config import option
from posttrain.errors import ConfigError
from posttrain.losses.preference import PairLogps, PreferenceParams, preference_loss
from posttrain.models.reference import ReferencePolicy
from posttrain.online.algorithm import OnlineRL
from posttrain.online.experience import policy_outputs
from posttrain.online.options import RolloutOptions, reject_unread
from posttrain.options import RefSyncOptions, output_dir_option, restate
from posttrain.train.scaffold import load_model_for

ONLINE_LOSSES = ("sigmoid", "ipo", "hinge")


@dataclass
class OnlineDPOConfig(RefSyncOptions, RolloutOptions):
    output_dir: str = output_dir_option("online_dpo")
    learning_rate: float = option(5e-7, "Peak learning rate (AdamW); TRL's OnlineDPO default 5e-7.")
    batch_size: int = restate(RolloutOptions, "batch_size", "Samples per micro-batch, rounded up to whole prompts (a multiple of num_generations): a pair is never split.")
    num_generations: int = restate(RolloutOptions, "num_generations", "Completions per prompt: the best and the worst by reward form its pair (TRL: 2).", default=2)
    beta: float = option(0.1, "β: the KL strength of the preference loss (IPO's target margin is 1/(2β); SLiC's hinge margin is 1/β).")
    loss_type: str = option("sigmoid", "Preference loss: sigmoid (DPO), ipo (online IPO), hinge (SLiC).", choices=ONLINE_LOSSES)
    reference: str = option("initial", "Anchor of the KL trust region: initial (a frozen copy of the starting policy; with ref_sync=hard ref_sync_steps=K the policy every K steps: BPO, the bpo preset) or behaviour (BPO per round: each round's sampler log-probs, no second model).", choices=("initial", "behaviour"))

    def validate(self) -> None:
        super().validate()
        if self.num_generations < 2:
            raise ConfigError(f"online DPO compares completions of the same prompt: num_generations must be >= 2, got {self.num_generations}")
        if self.prompts_per_step % self.num_minibatches:
            raise ConfigError(f"a pair must stay in one optimizer step: prompts_per_step ({self.prompts_per_step}) must be a multiple "
                              f"of num_minibatches ({self.num_minibatches})")
        if self.beta <= 0:
            raise ConfigError(f"beta must be > 0, got {self.beta}")
        self.check_ref_sync("with reference=behaviour the anchor is each round's sampler log-probs, no reference model "
                            "(a π_β refreshed every K steps is reference=initial ref_sync=hard ref_sync_steps=K)"
                            if self.reference == "behaviour" else None)
        reject_unread(self)

    # what the shared online parts read (online.algorithm, online.maker)
    advantage = "preference"
    tis_cap = 0.0


PRESETS: dict[str, dict] = {
    "online_dpo": {"loss_type": "sigmoid", "beta": 0.1, "reference": "initial"},  # TRL OnlineDPOConfig defaults
    "online_ipo": {"loss_type": "ipo", "beta": 0.1, "reference": "initial"},  # Calandriello et al. 2024 (S3 L3380-3386)
    "online_slic": {"loss_type": "hinge", "beta": 1.0, "reference": "initial"},
    # Xu et al. 2024 (S3 L3545-3571): π_β refreshed every K = T/F steps, the initial reference hard-synced every
    # K = 10; refreshed every step (reference=behaviour with one-step rounds) it is the policy itself, Δ = 0,
    # and nothing holds the policy back (bench: KL 335)
    "bpo": {"loss_type": "sigmoid", "beta": 0.1, "reference": "initial", "ref_sync": "hard", "ref_sync_steps": 10},
}


class OnlineDPO(OnlineRL):
    """OnlineRL whose loss is a preference loss on each prompt's (chosen, rejected) pair."""

    whole_groups = True  # the online source keeps a prompt's samples in one micro-batch

    def __init__(self, config: OnlineDPOConfig, tokenizer, rewards):
        super().__init__(config, tokenizer, rewards)
        self.params = PreferenceParams(beta=config.beta)

    def reference_for(self, model):
        # behaviour: none, the rollout log-probs are π_β's; initial: a frozen copy, moved by OnlineRL's ref_sync if asked
        return ReferencePolicy(model) if self.config.reference == "initial" else None

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
        return losses.sum() + 0.0 * policy.sum(), metrics  # 0 x policy: a batch of ties still has a graph to backpropagate


def run_online_dpo(config: OnlineDPOConfig) -> dict:
    """Train and save to output_dir; returns the last logged metrics."""
    tokenizer, rows, rewards = load_prompts(config)
    return train_online(config, OnlineDPO(config, tokenizer, rewards), rows, tokenizer,
                        build_model=lambda: load_model_for(config, device="cpu"))
