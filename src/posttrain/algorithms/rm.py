"""Reward-model training: Bradley-Terry on preference pairs, soft labels / ties, margins, K-wise rankings.

The model is the causal LM with its output head replaced by a scalar `score` head
(`AutoModelForSequenceClassification`, num_labels=1), read at the last non-pad token (or mean-pooled).
Data, by format:

- preference pairs `prompt`, `chosen`, `rejected`, optional `label` μ ∈ [0, 1] (0.5 = tie) and
  `margin`: loss −μ log σ(Δ − m) − (1 − μ) log σ(−Δ − m), Δ = r(chosen) − r(rejected)
  (losses/reward.py). One pair is one batch element.
- K-wise rankings `prompt`, `completions` (K), `ranking` (ranking[i] = rank of completions[i],
  0 = best): InstructGPT's form (Ouyang et al. 2022). All C(K, 2) pairs of a prompt are ONE batch
  element, each completion gets one forward pass (K, not 2·C(K, 2)), and the prompt's loss is the
  mean over its pairs. `rankings=pairs` instead splits a ranking into independent pairs (InstructGPT
  reports that this overfits).
- ranked trajectory pairs `chosen_trajectory`, `rejected_trajectory` (lists of {observation, action,
  next_observation} steps, optional `label` / `margin`; data/agent_rows.py): a STEP reward model
  R_φ(o_t, a_t, o_{t+1}) scores every step, and the pair is Bradley-Terry on the summed step rewards
  (the trajectory-level loss, losses/reward.py `trajectory_bradley_terry_loss`). The trajectories of a pair
  are one batch element; final/config.json records `reward_input: trajectory_step`, which the
  `step_reward` reward and the `cascade` read.

The loss of a step is the mean over batch elements (pairs, or prompts of a ranking); metrics
`accuracy` (pairs ordered as labelled; ties not counted), `margin` (mean r_chosen − r_rejected),
`chosen_reward`, `rejected_reward` are means over pairs. Held-out `eval_accuracy` is the headline.

After training, a constant offset makes the mean reward of a reference set 0 (InstructGPT adds "a
bias so labeller demonstrations have mean reward 0"): by default the chosen (best-ranked)
completions of the training data. It is stored in final/config.json as `reward_offset`, because
the HF `score` head has no bias (see models/reward_model.py for what that means for plain loading).
For a step reward model the reference is every step of the chosen trajectories (mean step reward 0).

    posttrain rm dataset=prefs.jsonl eval_dataset=heldout.jsonl model=Qwen/Qwen2.5-0.5B-Instruct lora=true
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

import posttrain.ranks as ranks
from posttrain.config import option
from posttrain.data.collate import to_device
from posttrain.data.agent_rows import step_row
from posttrain.data.formats import PROMPT_COMPLETION, RANKING, TRAJECTORY_PAIRS, detect_format, validate
from posttrain.data.pairs import INVALID_PAIR_POLICIES, load_pairs, skip_invalid
from posttrain.data.shared_prefix import pack_groups
from posttrain.data.steps import OfflineSource
from posttrain.data.tokenize import tokenize_example, tokenize_rows
from posttrain.errors import ConfigError, DataError, UserError, data_error
from posttrain.losses.reward import (
    centering_penalty,
    pair_accuracy,
    ranking_pairs,
    trajectory_bradley_terry_loss,
    trajectory_returns,
)
from posttrain.models.loading import resolve_device
from posttrain.models.reward_model import (
    INPUT_KEY,
    OFFSET_KEY,
    POOLINGS,
    TRAJECTORY_STEP,
    collate_sequences,
    load_reward_model,
    sequence_rewards,
)
from posttrain.models.shared_prefix_attention import use_shared_prefix_attention
from posttrain.options import TokenizeOptions, TrainOptions, output_dir_option
from posttrain.tasks.sources import load_rows
from posttrain.train import distributed
from posttrain.train.loop import Algorithm, train
from posttrain.train.scaffold import check_own_loader, dtype_for, start_run


@dataclass
class RewardConfig(TokenizeOptions, TrainOptions):
    output_dir: str = output_dir_option("rm")
    dataset: str = option("", "Training data: preference pairs (prompt, chosen, rejected[, label, margin]), K-wise rankings (prompt, completions, ranking) or ranked trajectory pairs (chosen_trajectory, rejected_trajectory: lists of {observation, action, next_observation} steps; trains a step reward model), as a .jsonl/.json/.parquet/.csv file, a save_to_disk directory or a hub name.")
    pooling: str = option("last", "Where the score is read: 'last' non-pad token (what transformers' sequence classifiers do) or 'mean' over the sequence's tokens.", choices=POOLINGS)
    center_rewards_coefficient: float = option(0.0, "Add coef * mean((r_chosen + r_rejected)^2) to the loss (TRL's reward centering); 0 disables.")
    reward_offset: str = option("chosen", "After training, shift rewards so a reference set has mean 0 (as InstructGPT): 'chosen' (the training data's chosen / best-ranked completions), 'none', or a data file (prompt/completion demonstrations, or pairs / rankings whose chosen / best side is used).")
    rankings: str = option("grouped", "K-wise ranking data: 'grouped' (all C(K,2) pairs of a prompt in one batch element, InstructGPT) or 'pairs' (independent pairs).", choices=("grouped", "pairs"))
    invalid_pairs: str = option("error", "Pairs with identical or empty sides (rankings with identical completions): 'error' names the row; 'drop' skips them and logs how many.", choices=INVALID_PAIR_POLICIES)
    trainable_layers: int = option(0, "Train only the top N transformer layers plus the final norm and the score head (0: all layers).")
    head_only: bool = option(False, "Train only the score head (a linear probe on the frozen backbone).")
    disable_dropout: bool = option(True, "Set every dropout probability to 0 (as TRL's RewardTrainer does): rewards of chosen and rejected come from the same function.")
    packing: bool = option(True, "Lay out each micro-batch as one row: every batch element's shared prompt once, then its completions, attention kept inside each prompt+completion. The same rewards as padded batches without work on padding or repeated prompts (sdpa / eager attention; others fall back to padding).")

    def validate(self) -> None:
        super().validate()
        if not self.dataset:
            raise ConfigError("set dataset=FILE with preference pairs (prompt, chosen, rejected), rankings (prompt, completions, ranking) "
                              "or trajectory pairs (chosen_trajectory, rejected_trajectory)")
        if self.center_rewards_coefficient < 0:
            raise ConfigError(f"config key 'center_rewards_coefficient' must be >= 0, got {self.center_rewards_coefficient}")
        if self.trainable_layers < 0:
            raise ConfigError(f"config key 'trainable_layers' must be >= 0, got {self.trainable_layers}")
        chosen = [k for k, on in (("lora", self.lora), ("head_only", self.head_only), ("trainable_layers", self.trainable_layers > 0)) if on]
        if len(chosen) > 1:
            raise ConfigError(f"{' and '.join(chosen)} both choose what is trained; set only one of lora, head_only, trainable_layers")


PRESETS: dict[str, dict] = {}


# ------------------------------------------------------------------------------------------ data
#
# An item is one batch element: {"sequences": [token ids, ...], "pairs": [(winner, loser), ...],
# "label": [μ per pair], "margin": [m per pair], "best": index of the preferred sequence, "row"}.
# A trajectory item also has "owner" (the trajectory of each sequence: pairs then index trajectories,
# whose reward is the sum over their steps) and "reference" (the sequences the offset centres).


def pair_item(example: dict) -> dict:
    """A load_pairs example as an item of two sequences and one comparison."""
    prompt = example["prompt_ids"]
    return {"sequences": [prompt + example["chosen_ids"], prompt + example["rejected_ids"]], "pairs": [(0, 1)],
            "label": [example["label"]], "margin": [example["margin"]], "best": 0, "row": example["row"]}


def ranking_items(tokenizer, records: list[dict], source: str, config: RewardConfig, dropped: Counter) -> list[dict]:
    """K-wise ranking rows kept whole: each completion tokenized once, all C(K,2) comparisons."""
    validate(records, [RANKING], source)
    items = []
    for i, row in enumerate(records):
        texts = [json.dumps(c, sort_keys=True) for c in row["completions"]]
        if len(set(texts)) < len(texts) and skip_invalid(config.invalid_pairs, dropped, "identical completions", data_error(
                source, i, "completions", "two completions are identical, so their ranks carry no preference; "
                "fix the row, or set invalid_pairs=drop to skip such rows")):
            continue
        sequences = []
        for k, completion in enumerate(row["completions"]):
            one = {"prompt": row["prompt"], "completion": completion, **({"tools": row["tools"]} if "tools" in row else {})}
            try:
                sequences.append(tokenize_example(tokenizer, one, max_length=config.max_length, truncation=config.truncation,
                                                  source=source, row_index=i)["input_ids"])
            except DataError as e:  # name the ranking's column, not the internal one
                raise DataError(str(e).replace("column 'completion'", f"column 'completions[{k}]'")) from None
        pairs = ranking_pairs(row["ranking"])
        items.append({"sequences": sequences, "pairs": pairs, "label": [1.0] * len(pairs), "margin": [0.0] * len(pairs),
                      "best": row["ranking"].index(0), "row": i})
    if not items:
        raise data_error(source, None, None, f"no usable rankings (dropped: {dict(dropped)})")
    return items


def trajectory_items(tokenizer, records: list[dict], source: str, config: RewardConfig, dropped: Counter) -> list[dict]:
    """Ranked trajectory pairs: every step tokenized as `agent_rows.step_row`; trajectory 0 preferred."""
    validate(records, [TRAJECTORY_PAIRS], source)
    items = []
    for i, row in enumerate(records):
        chosen, rejected = row["chosen_trajectory"], row["rejected_trajectory"]
        if chosen == rejected and skip_invalid(config.invalid_pairs, dropped, "identical trajectories", data_error(
                source, i, "rejected_trajectory", "equals chosen_trajectory, so the pair carries no "
                "preference; fix the row, or set invalid_pairs=drop to skip such rows")):
            continue
        sequences = []
        for column, t, step in [("chosen_trajectory", t, s) for t, s in enumerate(chosen)] + \
                [("rejected_trajectory", t, s) for t, s in enumerate(rejected)]:
            row_of_step = step_row(tokenizer, step)
            try:
                sequences.append(tokenize_example(tokenizer, row_of_step, max_length=config.max_length, truncation=config.truncation,
                                                  completion_only=False, source=source, row_index=i)["input_ids"])
            except DataError as e:  # name the trajectory's column and step, not the internal one
                raise DataError(str(e).replace(f"column '{next(iter(row_of_step))}'", f"column '{column}', step {t}")) from None
        label = row.get("label")
        items.append({"sequences": sequences, "owner": [0] * len(chosen) + [1] * len(rejected), "pairs": [(0, 1)],
                      "label": [1.0 if label is None else float(label)], "margin": [float(row.get("margin") or 0.0)],
                      "best": 0, "reference": list(range(len(chosen))), "row": i})
    if not items:
        raise data_error(source, None, None, f"no usable trajectory pairs (dropped: {dict(dropped)})")
    return items


def load_items(tokenizer, source: str, split: str | None, config: RewardConfig) -> tuple[list[dict], Counter]:
    """Read pairs, rankings or trajectory pairs as items; returns (items, dropped counts by reason)."""
    records = load_rows(source, split, options=config)
    if records and detect_format(records, source) == TRAJECTORY_PAIRS:
        dropped = Counter()
        return trajectory_items(tokenizer, records, source, config, dropped), dropped
    if records and detect_format(records, source) == RANKING and config.rankings == "grouped":
        dropped: Counter = Counter()
        return ranking_items(tokenizer, records, source, config, dropped), dropped
    examples, dropped = load_pairs(tokenizer, records, source, max_length=config.max_length, truncation=config.truncation,
                                   invalid_pairs=config.invalid_pairs, num_proc=config.dataset_num_proc)
    return [pair_item(ex) for ex in examples], dropped


# ------------------------------------------------------------------------------------- algorithm


class RewardModeling(Algorithm):
    """Bradley-Terry over a batch of items; each item counts 1 (a ranking's pairs share that 1)."""

    def __init__(self, pad_token_id: int, pooling: str = "last", center_rewards_coefficient: float = 0.0,
                 packing: bool = True):
        self.pad_token_id, self.pooling, self.center, self.packing = pad_token_id, pooling, center_rewards_coefficient, packing

    def setup(self, model) -> None:
        if self.packing and not use_shared_prefix_attention(model):
            self.packing = False  # e.g. flash_attention_2: no per-sequence prefix attention, so pad instead
            if ranks.is_main():
                print("posttrain: packing off: the model's attention implementation is not sdpa or eager; batches are padded", flush=True)

    def collate(self, items: list[dict]) -> dict:
        sequences, owners, winners, losers, labels, margins, weights = [], [], [], [], [], [], []
        sides = 0  # sides so far: sequences, or trajectories of several step sequences
        for item in items:
            base, n, owner = sides, len(item["pairs"]), item.get("owner", range(len(item["sequences"])))
            owners += [base + o for o in owner]
            sides += max(owner) + 1
            sequences += item["sequences"]
            for (w, lo), mu, m in zip(item["pairs"], item["label"], item["margin"]):
                winners.append(base + w)
                losers.append(base + lo)
                labels.append(mu)
                margins.append(m)
                weights.append(1.0 / n)  # a ranking's C(K,2) pairs are one batch element (seed 003)
        if self.packing:
            batch = pack_groups([item["sequences"] for item in items], self.pad_token_id)  # one row, no padding
        else:
            batch = collate_sequences(sequences, self.pad_token_id)
        batch.update(owner=torch.tensor(owners), num_sides=sides, winner=torch.tensor(winners), loser=torch.tensor(losers), label=torch.tensor(labels),
                     margin=torch.tensor(margins), weight=torch.tensor(weights), num_items=len(items))
        return batch

    def batch_weight(self, batch: dict) -> float:
        return batch["num_items"]

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        rewards = sequence_rewards(model, batch, self.pooling)  # one per sequence: a completion, or a trajectory's step
        sides = batch["num_sides"]
        per_pair = trajectory_bradley_terry_loss(rewards, batch["owner"], sides, batch["winner"], batch["loser"],
                                                 batch["label"], batch["margin"])  # a completion is a one-step trajectory
        returns = trajectory_returns(rewards, batch["owner"], sides)
        chosen, rejected = returns[batch["winner"]], returns[batch["loser"]]
        if self.center:
            per_pair = per_pair + self.center * centering_penalty(chosen, rejected)
        loss = (per_pair * batch["weight"]).sum()
        with torch.no_grad():
            n = chosen.numel()
            correct, decided = pair_accuracy(chosen, rejected, batch["label"])
            metrics = {"accuracy": (correct, decided), "margin": ((chosen - rejected).sum(), n),
                       "chosen_reward": (chosen.sum(), n), "rejected_reward": (rejected.sum(), n)}
        return loss, metrics


# ------------------------------------------------------------------------------------------ model


def freeze(model, trainable_layers: int, head_only: bool):
    """Leave only the score head (head_only), or the top N layers + final norm + head, trainable."""
    if not head_only and trainable_layers <= 0:
        return model
    for p in model.parameters():
        p.requires_grad_(False)
    keep = [model.score]
    if not head_only:
        backbone = model.base_model
        layers = max((m for m in backbone.modules() if isinstance(m, torch.nn.ModuleList)), key=len, default=None)
        norm = next((getattr(backbone, n) for n in ("norm", "ln_f", "final_layernorm", "final_layer_norm") if hasattr(backbone, n)), None)
        if layers is None or norm is None:
            raise UserError(f"trainable_layers: cannot find the layer list and final norm of {type(backbone).__name__}; use lora=true or head_only=true")
        if trainable_layers > len(layers):
            raise ConfigError(f"trainable_layers={trainable_layers} but the model has {len(layers)} layers")
        keep += list(layers[len(layers) - trainable_layers:]) + [norm]
    for module in keep:
        for p in module.parameters():
            p.requires_grad_(True)
    return model


def no_dropout(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
    return model


def build_reward_model(config: RewardConfig, pad_token_id: int):
    check_own_loader(config, "for a reward model (a sequence classifier)")
    model = load_reward_model(config.model, pad_token_id, dtype_for(config), "cpu", config.trust_remote_code, pooling=config.pooling,
                              attn_implementation=config.attn_implementation)
    if config.disable_dropout:
        no_dropout(model)
    return freeze(model, config.trainable_layers, config.head_only)


# ---------------------------------------------------------------------------------------- offset


def reference_sequences(tokenizer, config: RewardConfig, train_items: list[dict]) -> list[list[int]]:
    """The sequences whose mean reward is set to 0: chosen / best-ranked ones, or a given file's."""
    if config.reward_offset == "chosen":
        return [item["sequences"][k] for item in train_items for k in item.get("reference", [item["best"]])]
    source = config.reward_offset
    records = load_rows(source)
    if records and detect_format(records, source) == PROMPT_COMPLETION:
        validate(records, [PROMPT_COMPLETION], source)
        return [ex["input_ids"] for ex in tokenize_rows(tokenizer, records, max_length=config.max_length,
                                                        truncation=config.truncation, source=source)]
    items, _ = load_items(tokenizer, source, None, dataclasses.replace(config, invalid_pairs="drop"))
    return [item["sequences"][k] for item in items for k in item.get("reference", [item["best"]])]


@torch.no_grad()
def mean_reward(model_dir: str, sequences: list[list[int]], pad_token_id: int, config: RewardConfig) -> float:
    model = load_reward_model(model_dir, pad_token_id, dtype_for(config), resolve_device(config.device)).eval()
    device, total = next(model.parameters()).device, 0.0
    for i in range(0, len(sequences), config.batch_size):
        batch = to_device(collate_sequences(sequences[i:i + config.batch_size], pad_token_id), device)
        total += float(sequence_rewards(model, batch, config.pooling).sum())
    return total / len(sequences)


def write_config_keys(model_dir: Path, **keys) -> None:
    """Set keys (`reward_offset`, `reward_input`) in config.json (written to a temp file, then renamed over the old one)."""
    path = model_dir / "config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(keys)
    tmp = path.with_name("config.json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------- run


def run_rm(config: RewardConfig) -> dict:
    """Train, evaluate, save to output_dir/final and set the reward offset; returns the last logged metrics."""
    if config.reward_offset not in ("chosen", "none") and not Path(config.reward_offset).exists():
        raise ConfigError(f"reward_offset={config.reward_offset!r} is not 'chosen', 'none' or an existing data file")
    run, tokenizer = start_run(config)
    with distributed.joined_for_loading(config.device):
        train_items, dropped = load_items(tokenizer, config.dataset, config.dataset_split, config)
        eval_items, eval_dropped = load_items(tokenizer, config.eval_dataset, None, config) if config.eval_dataset else ([], Counter())
    if ranks.is_main():
        for what, counts in (("training", dropped), ("eval", eval_dropped)):
            if counts:
                print(f"posttrain: dropped from the {what} data (invalid_pairs=drop): "
                      + ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())), flush=True)
    algorithm = RewardModeling(tokenizer.pad_token_id, config.pooling, config.center_rewards_coefficient, config.packing)
    what = ("trajectory pairs" if train_items and "owner" in train_items[0]
            else "rankings" if train_items and len(train_items[0]["pairs"]) > 1 else "pairs")
    source = OfflineSource(train_items, algorithm.collate, config.batch_size, config.gradient_accumulation_steps,
                           config.seed, what=what)
    try:
        last = train(config, build_model=lambda: build_reward_model(config, tokenizer.pad_token_id),
                     tokenizer=tokenizer, algorithm=algorithm, source=source, eval_items=eval_items)
        if what == "trajectory pairs" and ranks.is_main():  # what the model scores: one (o_t, a_t, o_{t+1}) step
            write_config_keys(run.final, **{INPUT_KEY: TRAJECTORY_STEP})
        if config.reward_offset != "none" and ranks.is_main():
            reference = reference_sequences(tokenizer, config, train_items)
            offset = -mean_reward(str(run.final), reference, tokenizer.pad_token_id, config)
            write_config_keys(run.final, **{OFFSET_KEY: offset})
            print(f"posttrain: reward_offset {offset:+.4f} in {run.final / 'config.json'} (mean reward of "
                  f"{len(reference)} reference completions set to 0)", flush=True)
        return last
    finally:
        distributed.cleanup()
