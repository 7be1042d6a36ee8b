"""Direct preference optimization and its family, on preference pairs.

    posttrain dpo dataset=pairs.jsonl model=sft-out/final beta=0.1
    posttrain dpo --preset simpo dataset=pairs.jsonl
    posttrain dpo dataset=pairs.jsonl loss_type=[sigmoid,sft] loss_weights=[1.0,1.0]   # RPO

Reads preference pairs (`prompt`, `chosen`, `rejected`, optional `label` μ and `margin`; implicit
prompts, rankings, signed-label and unpaired rows are converted). Chosen and rejected go through
one forward pass, the prompt computed once for both (`packing`); each side's log-prob is the sum
over its completion tokens, with the output head run on completion positions only. The loss of each pair is the weighted sum of
the `loss_type` entries (losses/preference.py holds every equation); the step's loss is the mean
over all pairs of the global batch.

The reference policy (`ref_model`): a frozen copy of the starting model, the adapter-disabled base
under LoRA, or log-probs precomputed once and cached (`precompute`); `ref_model_path` takes it from
another model instead (iterative DPO with a fixed SFT reference). Reference-free losses (simpo, orpo,
cpo, sft alone) use none. TR-DPO (`ref_sync=soft|hard`, `ref_sync_steps` τ, `ref_sync_alpha` α) moves the
frozen copy during training: θ_ref ← α θ + (1 − α) θ_ref every τ steps (hard: α = 1), logged as `ref_syncs`.

Logged: `rewards/chosen` and `rewards/rejected` (the implicit rewards β·log π_θ/π_ref; without a
reference, what TRL's CPO / ORPO trainers log: β·log π_θ for cpo, the length-normalised β·log π_θ/|y|
for simpo and λ·log π_θ/|y| for orpo, so they follow the loss's objective), `rewards/margins`,
`rewards/accuracies` (share of pairs whose chosen reward is higher), `logps/chosen` and
`logps/rejected` (summed log-probs under the policy).
`rewards/chosen` usually falls while the margin grows: the loss sees only the margin, and pushing
down a rejected completion also pushes down its look-alike chosen one. That is fine while
`rewards/margins` and held-out `rewards/accuracies` rise; if `logps/chosen` falls by many nats per
token, add an NLL term (`--preset rpo`), lower the learning rate or raise beta.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

import posttrain.ranks as ranks
from posttrain.config import option
from posttrain.data.converters import RANKING_PAIRS
from posttrain.data.pairs import INVALID_PAIR_POLICIES, collate_pairs, load_pairs
from posttrain.data.sources import parse_shard, shard_rows
from posttrain.errors import ConfigError, DataError
from posttrain.losses.preference import (LOSSES, REFERENCE_FREE, SOFT_LABELS, PairLogps, PreferenceParams, implicit_rewards,
                                         preference_loss)
from posttrain.models.loading import resolve_device
from posttrain.models.logprobs import sequence_logprobs
from posttrain.models.reference import CACHE_NAME, ReferencePolicy, ReferenceSync, cache_key, load_reference, precompute
from posttrain.models.shared_prefix_attention import use_shared_prefix_attention
from posttrain.options import RefSyncOptions, TokenizeOptions, TrainOptions, output_dir_option
from posttrain.tasks.sources import load_rows
from posttrain.train import distributed
from posttrain.train.loop import Algorithm, train_offline
from posttrain.train.scaffold import start_run


@dataclass
class DPOConfig(TokenizeOptions, RefSyncOptions, TrainOptions):
    output_dir: str = output_dir_option("dpo")
    learning_rate: float = option(5e-7, "Peak learning rate (AdamW); DPO wants a small one (TRL: 1e-6).")
    beta: float = option(0.1, "β: the KL strength; larger keeps the policy closer to the reference (SimPO: the reward scale, 2-2.5).")
    loss_type: list[str] = option(["sigmoid"], f"Loss(es) to sum, weighted by loss_weights: {', '.join(LOSSES)}.")
    loss_weights: list[float] | None = option(None, "One weight per loss_type entry (default: all 1.0).")
    label_smoothing: float = option(0.0, "ε: probability that a label is flipped (cDPO with sigmoid, robust DPO with robust; also simpo, cpo). In [0, 0.5).")
    simpo_gamma: float = option(0.5, "γ: SimPO's target reward margin (0.5-1.5).")
    orpo_lambda: float = option(0.1, "λ: weight of ORPO's odds-ratio term against its SFT term.")
    discopop_tau: float = option(0.05, "τ: DiscoPOP's gate temperature.")
    ref_model: str = option("copy", "Reference policy: a frozen copy (the adapter-disabled base under LoRA), or precompute its log-probs once and cache them.", choices=("copy", "precompute"))
    ref_model_path: str | None = option(None, "Take the reference from this model instead of the starting one (iterative DPO: keep the SFT model as the reference every round); null: the starting model.")
    precompute_batch_size: int = option(16, "Pairs per forward pass when precomputing reference log-probs.")
    packing: bool = option(True, "Lay each pair out as its prompt once, then chosen and rejected, with no padding and attention per sequence (the same log-probs as padded batches; sdpa / eager models, others pad).")
    ranking_pairs: str = option("all", "Ranking rows (prompt, completions, ranking) become: all, every C(K,2) pair; best_worst, best vs worst with the middle dropped (CPO's triplets).", choices=tuple(RANKING_PAIRS))
    data_shard: str | None = option(None, "K/N: train on the K-th of N equal contiguous slices of dataset (sDPO: step K on slice K, from and against step K-1's model; the sdpo recipe).")
    invalid_pairs: str = option("error", "Pairs with identical or empty sides, or differing prompts: error, or drop them (counted in the log).", choices=INVALID_PAIR_POLICIES)

    def validate(self) -> None:
        super().validate()
        unknown = [t for t in self.loss_type if t not in LOSSES]
        if unknown or not self.loss_type:
            raise ConfigError(f"loss_type: unknown {unknown or 'empty list'}; valid: {', '.join(LOSSES)}")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ConfigError(f"loss_weights has {len(self.loss_weights)} entries but loss_type has {len(self.loss_type)}; give one weight per loss")
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.beta <= 0:
            raise ConfigError(f"beta must be > 0, got {self.beta}")
        self.check_ref_sync("reference-free losses have none" if self.reference_free else
                            "ref_model=precompute fixes its log-probs before training (use ref_model=copy)" if self.ref_model == "precompute" else None)
        if self.data_shard:
            parse_shard(self.data_shard)

    @property
    def reference_free(self) -> bool:
        return all(t in REFERENCE_FREE for t in self.loss_type)

    def loss_params(self) -> PreferenceParams:
        return PreferenceParams(beta=self.beta, label_smoothing=self.label_smoothing, simpo_gamma=self.simpo_gamma,
                                orpo_lambda=self.orpo_lambda, discopop_tau=self.discopop_tau)


# Named sets of values (`--preset NAME`); each is the paper's recipe where the seeds give one.
PRESETS: dict[str, dict] = {
    "dpo": {"loss_type": ["sigmoid"], "beta": 0.1},
    "cdpo": {"loss_type": ["sigmoid"], "beta": 0.1, "label_smoothing": 0.1},
    "robust": {"loss_type": ["robust"], "beta": 0.1, "label_smoothing": 0.1},
    "ipo": {"loss_type": ["ipo"], "beta": 0.01},  # seed 003 L3807: best β = 0.01
    "slic": {"loss_type": ["hinge"], "beta": 1.0},
    "simpo": {"loss_type": ["simpo"], "beta": 2.0, "simpo_gamma": 0.5},  # seed 003 L3573: β 2-2.5, γ 0.5-1.5
    "orpo": {"loss_type": ["orpo"], "orpo_lambda": 0.1},
    "cpo": {"loss_type": ["cpo"], "beta": 0.1, "ranking_pairs": "best_worst"},  # triplets: best vs worst
    "rpo": {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 1.0]},
    "apo_zero": {"loss_type": ["apo_zero"], "beta": 0.1},
    "apo_down": {"loss_type": ["apo_down"], "beta": 0.1},
    "tr_dpo": {"loss_type": ["sigmoid"], "beta": 0.1, "ref_sync": "soft", "ref_sync_alpha": 0.6, "ref_sync_steps": 512},  # TR-DPO^α (TRL's defaults)
    "mdpo": {"loss_type": ["sigmoid", "anchor"], "beta": 0.1},  # seed 003 L3444-3450: DPO + anchor, β 0.1
}


class DPO(Algorithm):
    """Per-pair preference losses; the loop divides the summed loss by the number of pairs."""

    def __init__(self, config: DPOConfig, pad_token_id: int, precompute_sets: list[list[dict]] = ()):
        self.config, self.pad_token_id = config, pad_token_id
        self.params = config.loss_params()
        self.weights = config.loss_weights or [1.0] * len(config.loss_type)
        self.precompute_sets = list(precompute_sets)
        self.reference: ReferencePolicy | None = None
        self.sync: ReferenceSync | None = None  # TR-DPO's reference updates (ref_sync)
        self.packed = False  # set in setup when the model takes the shared-prefix layout

    def setup(self, model) -> None:
        self.packed = self.config.packing and use_shared_prefix_attention(model)
        if self.config.reference_free:
            return
        path = self.config.ref_model_path
        if self.config.ref_model == "copy":
            self.reference = ReferencePolicy(model, path)
            if self.config.ref_sync != "none":
                self.sync = ReferenceSync(self.reference, model, self.config.ref_sync, self.config.ref_sync_steps, self.config.ref_sync_alpha)
            return
        examples = [ex for group in self.precompute_sets for ex in group]
        key = cache_key(path or self.config.model, examples, ("prompt_ids", "chosen_ids", "chosen_mask", "rejected_ids", "rejected_mask"))
        device = resolve_device(self.config.device)
        scorer = load_reference(path, model) if path else model
        scorer.to(device)
        precompute(scorer, examples, self.collate, _score_reference, self.config.precompute_batch_size,
                   Path(self.config.output_dir) / CACHE_NAME, key, device, write_cache=ranks.is_main())

    def after_step(self, model, step: int, metrics: dict) -> dict:
        return self.sync.after_step(model, step) if self.sync else {}

    def state_dict(self) -> dict:
        return {"ref_sync": self.sync.state_dict()} if self.sync else {}

    def load_state_dict(self, state: dict) -> None:
        if self.sync and "ref_sync" in state:
            self.sync.load_state_dict(state["ref_sync"])

    def collate(self, items: list[dict]) -> dict:
        return collate_pairs(items, self.pad_token_id, self.packed)

    def batch_weight(self, batch: dict) -> float:
        return float(batch["num_pairs"])

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        inputs = model_inputs(batch)
        policy = sequence_logprobs(model, **inputs)
        pairs = batch["num_pairs"]
        chosen_tokens, rejected_tokens = policy.counts.split(pairs)
        p = PairLogps(*policy.sums.split(pairs), chosen_tokens=chosen_tokens, rejected_tokens=rejected_tokens,
                      label=batch["label"])
        if "ref_chosen_logps" in batch:
            p.ref_chosen, p.ref_rejected = batch["ref_chosen_logps"], batch["ref_rejected_logps"]
        elif self.reference is not None:
            p.ref_chosen, p.ref_rejected = self.reference.sequence_logprobs(model, **inputs).sums.split(pairs)
        losses = preference_loss(p, self.params, self.config.loss_type, self.weights)
        return losses.sum(), pair_metrics(p, self.params, self.config.loss_type)


def model_inputs(batch: dict) -> dict:
    """`sequence_logprobs` arguments for a padded or a packed pair batch."""
    if "targets" in batch:
        return dict(input_ids=batch["input_ids"], targets=batch["targets"], position_ids=batch["position_ids"],
                    attention_mask=batch["attention_mask"], prefix_groups=batch["prefix_groups"])
    return dict(input_ids=batch["input_ids"], target_mask=batch["target_mask"], attention_mask=batch["attention_mask"])


def _score_reference(model, batch: dict) -> dict[str, torch.Tensor]:
    sums = sequence_logprobs(model, **model_inputs(batch)).sums
    chosen, rejected = sums.split(batch["num_pairs"])
    return {"ref_chosen_logps": chosen, "ref_rejected_logps": rejected}


@torch.no_grad()
def pair_metrics(p: PairLogps, params: PreferenceParams, loss_types: list[str]) -> dict:
    """Sums over the pairs (the loop divides by the number of pairs of the step)."""
    chosen, rejected = implicit_rewards(p, params, loss_types)
    return {
        "rewards/chosen": chosen.sum(), "rewards/rejected": rejected.sum(),
        "rewards/margins": (chosen - rejected).sum(), "rewards/accuracies": (chosen > rejected).float().sum(),
        "logps/chosen": p.policy_chosen.sum(), "logps/rejected": p.policy_rejected.sum(),
    }


def orient_pairs(examples: list[dict], loss_types: list[str], source: str) -> list[dict]:
    """Losses that read only hard labels get pairs with μ = 1: a pair labelled 0 (the rejected side
    won) is swapped; a soft label or tie is an error naming the losses that accept one."""
    if all(t in SOFT_LABELS for t in loss_types):
        return examples
    out = []
    for ex in examples:
        if ex["label"] == 1.0:
            out.append(ex)
        elif ex["label"] == 0.0:
            out.append({**ex, "chosen_ids": ex["rejected_ids"], "chosen_mask": ex["rejected_mask"],
                        "rejected_ids": ex["chosen_ids"], "rejected_mask": ex["chosen_mask"], "label": 1.0})
        else:
            hard = [t for t in loss_types if t not in SOFT_LABELS]
            raise DataError(
                f"{source}, row {ex['row']}, column 'label': soft label {ex['label']} (ties / probabilities) but "
                f"loss_type {hard} needs hard labels; use loss_type=[sigmoid] or give labels of 0 or 1"
            )
    return out


def load_examples(tokenizer, source: str, split: str | None, config: DPOConfig, what: str, shard: str | None = None) -> list[dict]:
    rows = load_rows(source, split, options=config)
    if shard:  # sDPO: this step's slice of the training data
        rows = shard_rows(rows, shard)
    examples, dropped = load_pairs(tokenizer, rows, source, max_length=config.max_length, truncation=config.truncation,
                                   invalid_pairs=config.invalid_pairs, ranking_pairs=config.ranking_pairs, num_proc=config.dataset_num_proc)
    if dropped and ranks.is_main():
        print(f"posttrain: {what}: dropped {sum(dropped.values())} pairs ({', '.join(f'{k}: {v}' for k, v in dropped.items())})")
    return orient_pairs(examples, config.loss_type, source)


def run_dpo(config: DPOConfig) -> dict:
    """Train, evaluate and save to output_dir; returns the last logged metrics."""
    _, tokenizer = start_run(config)
    with distributed.joined_for_loading(config.device):
        train_examples = load_examples(tokenizer, config.dataset, config.dataset_split, config, "training data", config.data_shard)
        eval_examples = load_examples(tokenizer, config.eval_dataset, None, config, "eval data") if config.eval_dataset else []
    algorithm = DPO(config, tokenizer.pad_token_id, precompute_sets=[train_examples, eval_examples])
    return train_offline(config, tokenizer=tokenizer, algorithm=algorithm, items=train_examples, eval_items=eval_examples,
                         what="preference pairs")

