"""Kahneman-Tversky optimization (KTO): learn from unpaired desirable / undesirable completions.

Reads unpaired rows (`prompt`, `completion`, `label` true = desirable); preference pairs, rankings
and signed rows become unpaired rows automatically (a pair's chosen completion is desirable, its
rejected one undesirable). The loss is λ_y − v(x, y) with v = λ_D σ(β(r_θ − z₀)) for desirable and
λ_U σ(β(z₀ − r_θ)) for undesirable completions, r_θ = log πθ(y|x) − log π_ref(y|x) (Ethayarajh
et al. 2024; losses/kto.py). The reference point z₀ is estimated on every micro-batch, without
gradient, from each prompt paired with another example's completion (a pairing fixed per data set
by `seed`), averaged over processes, clamped at 0.

    posttrain kto dataset=feedback.jsonl model=Qwen/Qwen2.5-0.5B beta=0.1 learning_rate=5e-7
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

import posttrain.ranks as ranks
from posttrain.config import option
from posttrain.data.unpaired import assign_kl_completions, collate_unpaired, load_unpaired, stack_sides
from posttrain.errors import ConfigError
from posttrain.losses.kto import LOSS_TYPES, RECOMMENDED_BALANCE, balance_ratio, kto_loss, kto_reference_point
from posttrain.models.logprobs import sequence_logprobs
from posttrain.models.reference import CACHE_NAME, ReferencePolicy, cache_key, precompute
from posttrain.options import TrainOptions, output_dir_option
from posttrain.tasks.sources import default_eval_source, load_rows
from posttrain.train import distributed
from posttrain.train.loop import Algorithm, train_offline
from posttrain.train.scaffold import start_run

EVAL_CACHE_NAME = "reference_logps_eval.pt"
_CACHE_FIELDS = ("prompt_ids", "completion_ids", "completion_mask", "kl_completion_ids", "kl_completion_mask")


@dataclass
class KTOConfig(TrainOptions):
    output_dir: str = output_dir_option("kto")
    beta: float = option(0.1, "β, the risk-aversion of the value function: larger keeps the policy closer to the reference.")
    desirable_weight: float = option(1.0, "λ_D, weight of desirable examples; aim for λ_D·n_D / (λ_U·n_U) in [1, 4/3] (KTO paper).")
    undesirable_weight: float = option(1.0, "λ_U, weight of undesirable examples.")
    loss_type: str = option("kto", "kto: KL reference point from mismatched pairs; apo_zero_unpaired: reference point 0 (no mismatched pass).", choices=LOSS_TYPES)
    ref_model: str = option("copy", "Reference policy: copy (frozen copy, or LoRA adapters off) or precompute (score all sequences once, cached in output_dir).", choices=("copy", "precompute"))

    def validate(self) -> None:
        super().validate()
        for key in ("beta", "desirable_weight", "undesirable_weight"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"config key '{key}' must be > 0, got {getattr(self, key)}")


PRESETS: dict[str, dict] = {}


class KTO(Algorithm):
    """Summed per-example KTO losses; the loop divides by the step's number of examples.

    The policy scores the matched sequences with gradient and the mismatched ones in a separate
    no-grad forward (z₀ takes no gradient: folding them into the graded pass would add their
    backward FLOPs and activations for nothing). The reference scores both in one forward pass.
    """

    def __init__(self, config: KTOConfig, pad_token_id: int, precompute_sets: list[tuple[list[dict], Path]] = ()):
        self.config, self.pad_token_id = config, pad_token_id
        self.with_kl = config.loss_type == "kto"
        self.precompute_sets = list(precompute_sets)
        self.reference: ReferencePolicy | None = None

    def setup(self, model) -> None:
        if self.config.ref_model == "copy":
            self.reference = ReferencePolicy(model)
            return
        device = distributed.setup(self.config.device).device
        model.to(device)
        for examples, path in self.precompute_sets:
            key = cache_key(self.config.model, examples, _CACHE_FIELDS if self.with_kl else _CACHE_FIELDS[:3])
            args = (model, examples, self.collate, self.score_reference, self.config.batch_size, path, key, device)
            if ranks.is_main():  # one process scores and writes; the others read its cache
                precompute(*args, write_cache=True)
            ranks.barrier()
            if not ranks.is_main():
                precompute(*args, write_cache=False)

    def collate(self, examples: list[dict]) -> dict:
        return collate_unpaired(examples, self.pad_token_id, with_kl=self.with_kl)

    def batch_weight(self, batch: dict) -> float:
        return batch["num_examples"]

    def score_reference(self, model, batch: dict) -> dict[str, torch.Tensor]:
        """{"ref_logps", "ref_kl_logps"} of a batch under `model` (for `precompute`)."""
        return self._score_sides(lambda ids, target, attention: sequence_logprobs(
            model, ids, target, attention_mask=attention).sums, batch)

    def reference_logps(self, model, batch: dict) -> dict[str, torch.Tensor]:
        """The batch's precomputed reference log-probs, or the reference policy's."""
        if "ref_logps" in batch:
            return {k: batch[k] for k in ("ref_logps", "ref_kl_logps") if k in batch}
        if self.reference is None:
            raise RuntimeError("ref_model=precompute but the batch carries no reference log-probs")
        return self._score_sides(lambda ids, target, attention: self.reference.sequence_logprobs(
            model, ids, target, attention_mask=attention).sums, batch)

    def _score_sides(self, score, batch: dict) -> dict[str, torch.Tensor]:
        """Matched and mismatched sequences scored in ONE forward pass: score(ids, target, attention) -> sums."""
        if not self.with_kl:
            return {"ref_logps": score(batch["input_ids"], batch["target_mask"], batch["attention_mask"])}
        ids, attention, target = stack_sides(batch, self.pad_token_id)
        sums = score(ids, target, attention)
        n = batch["num_examples"]
        return {"ref_logps": sums[:n], "ref_kl_logps": sums[n:]}

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        policy = sequence_logprobs(model, batch["input_ids"], batch["target_mask"], attention_mask=batch["attention_mask"])
        ref = self.reference_logps(model, batch)
        kl = torch.zeros((), device=policy.sums.device)
        if self.with_kl:
            with torch.no_grad():
                policy_kl = _logps(model, batch, prefix="kl_")
            kl = kto_reference_point(policy_kl, ref["ref_kl_logps"], ranks.all_reduce_sum)
        c = self.config
        losses, rewards = kto_loss(policy.sums, ref["ref_logps"], batch["label"], kl, beta=c.beta,
                                   desirable_weight=c.desirable_weight, undesirable_weight=c.undesirable_weight,
                                   loss_type=c.loss_type)
        good = batch["label"]
        bad = ~good
        logps = policy.sums.detach()
        metrics = {
            "rewards/desirable": (rewards[good].sum(), good.sum()),
            "rewards/undesirable": (rewards[bad].sum(), bad.sum()),
            "logps/desirable": (logps[good].sum(), good.sum()),
            "logps/undesirable": (logps[bad].sum(), bad.sum()),
            "desirable_fraction": good.sum(),  # a sum: the loop divides by the step's examples
        }
        if self.with_kl:
            metrics["kl"] = (kl, 1.0)  # mean of the micro-batches' z₀
        return losses.sum(), metrics


def _logps(model, batch: dict, prefix: str = "") -> torch.Tensor:
    return sequence_logprobs(model, batch[f"{prefix}input_ids"], batch[f"{prefix}target_mask"],
                             attention_mask=batch[f"{prefix}attention_mask"]).sums


def load_examples(tokenizer, source: str, split: str | None, config: KTOConfig, seed: int) -> list[dict]:
    """Read and tokenize unpaired examples; under loss_type=kto give each its mismatched completion."""
    examples = load_unpaired(tokenizer, load_rows(source, split, options=config), source, max_length=config.max_length, truncation=config.truncation)
    if config.loss_type == "kto":
        assign_kl_completions(examples, seed, config.max_length, source)
    return examples


def balance_warning(examples: list[dict], config: KTOConfig) -> str | None:
    """A warning line when λ_D·n_D / (λ_U·n_U) is outside the KTO paper's [1, 4/3], with weights that fit."""
    n_d = sum(ex["label"] for ex in examples)
    n_u = len(examples) - n_d
    ratio = balance_ratio(n_d, n_u, config.desirable_weight, config.undesirable_weight)
    low, high = RECOMMENDED_BALANCE
    if low <= ratio <= high:
        return None
    text = (f"posttrain: warning: desirable_weight·n_D / (undesirable_weight·n_U) = {ratio:.3g} "
            f"(n_D={n_d}, n_U={n_u}) is outside [1, 4/3], the range the KTO paper recommends")
    if n_d and n_u:
        u = config.undesirable_weight * n_u / n_d
        d = config.desirable_weight * n_d / n_u
        text += (f"; set desirable_weight in [{u * low:.3g}, {u * high:.3g}] "
                 f"or undesirable_weight in [{d / high:.3g}, {d / low:.3g}]")
    return text


def run_kto(config: KTOConfig) -> dict:
    """Train, evaluate and save to output_dir; returns the last logged metrics."""
    if config.eval_dataset is None:
        config = dataclasses.replace(config, eval_dataset=default_eval_source(config.dataset))
    _, tokenizer = start_run(config)
    train_examples = load_examples(tokenizer, config.dataset, config.dataset_split, config, config.seed)
    eval_examples = load_examples(tokenizer, config.eval_dataset, None, config, config.seed + 1) if config.eval_dataset else []
    warning = balance_warning(train_examples, config)
    if warning and ranks.is_main():
        print(warning, file=sys.stderr, flush=True)
    run = Path(config.output_dir)
    sets = [(train_examples, run / CACHE_NAME)] + ([(eval_examples, run / EVAL_CACHE_NAME)] if eval_examples else [])
    algorithm = KTO(config, tokenizer.pad_token_id, sets)
    return train_offline(config, tokenizer=tokenizer, algorithm=algorithm, items=train_examples, eval_items=eval_examples,
                         what="examples")
