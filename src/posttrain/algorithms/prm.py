"""Process reward model (PRM) training from stepwise labels: `posttrain prm`.

Data (TRL's stepwise format): rows with `prompt` (a string or a conversation), `completions` (the
solution's steps, a list of strings) and `labels` (one bool per step: true = a good step):

    {"prompt": "What is 47 + 85?", "completions": ["7+5=12 → 2", "4+8+1=13 → 132"], "labels": [true, true]}

The model is the causal LM with its output head replaced by a two-way token classifier
(`AutoModelForTokenClassification`, num_labels=2: 0 = bad, 1 = good), as in TRL's PRMTrainer. A row
becomes the prompt's tokens, then each step tokenized on its own followed by the tokens of
`step_separator` (default "\\n"); the step's label sits on the separator's last token and every other
token is ignored (-100), so the PRM reads a step's score right where the step ends
(`posttrain.rewards.process.stepwise_tokens`, shared with the process reward that scores
completions, so training and scoring see the same tokens). `train_on_last_step_only=true` keeps only
the last step's label in the training data (held-out data keeps all).

The loss is the cross-entropy of those step labels, a mean over every labelled step of the
optimizer step (accumulation and processes included); metrics `accuracy` (step-level: argmax equals
the label) and `bad_step_accuracy` (on the steps labelled bad), `eval_*` on held-out data.
`final/` is a plain transformers model (`AutoModelForTokenClassification.from_pretrained`) whose
config records the separator (`prm_step_separator`), which the `process_reward_model` reward reads.

    posttrain prm dataset=steps.jsonl eval_dataset=heldout.jsonl model=runs/sft/final learning_rate=1e-4
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from posttrain.algorithms.rm import no_dropout
from posttrain.config import option
from posttrain.data.steps import OfflineSource
from posttrain.errors import ConfigError, UserError, data_error
from posttrain.options import TrainOptions, output_dir_option
from posttrain.rewards.process import SEPARATOR_KEY, separator_ids, stepwise_tokens
from posttrain.tasks.sources import load_rows
from posttrain.train import distributed
from posttrain.train.loop import Algorithm, train
from posttrain.train.scaffold import check_own_loader, dtype_for, start_run

IGNORE_INDEX = -100
LABELS = {0: "bad", 1: "good"}


@dataclass
class PRMConfig(TrainOptions):
    output_dir: str = output_dir_option("prm")
    dataset: str = option("", "Training data in TRL's stepwise format: prompt, completions (list of step strings), labels (one bool per step), as a .jsonl/.json/.parquet/.csv file, a save_to_disk directory or a hub name.")
    learning_rate: float = option(1e-4, "Peak learning rate (AdamW).")
    step_separator: str = option("\n", "Text appended to every step; the step's label sits on its last token (stored in final/config.json for scoring).")
    train_on_last_step_only: bool = option(False, "Train on the label of each row's last step only (held-out data keeps every step).")
    disable_dropout: bool = option(True, "Set every dropout probability to 0 (as TRL's PRMTrainer does; the token classifier's head has dropout 0.1): a step's score is a function of its tokens, and N processes train exactly as one.")

    def validate(self) -> None:
        super().validate()
        if not self.dataset:
            raise ConfigError("set dataset=FILE with stepwise rows (prompt, completions, labels)")
        if not self.step_separator:
            raise ConfigError("step_separator must be a non-empty string, e.g. \"\\n\"")


PRESETS: dict[str, dict] = {}


# ------------------------------------------------------------------------------------------ data
#
# An item is one row: {"input_ids", "positions" (token index of each labelled step), "labels" (0/1), "row"}.


def check_row(row, source, i: int) -> None:
    """One-line DataError naming file, row and column for anything a stepwise row gets wrong."""
    if not isinstance(row, dict):
        raise data_error(source, i, None, f"expected an object with prompt, completions, labels, got {type(row).__name__}")
    for column in ("prompt", "completions", "labels"):
        if column not in row:
            raise data_error(source, i, column, "is missing; stepwise rows need prompt, completions (a list of step "
                                                "strings) and labels (one bool per step)")
    steps, labels = row["completions"], row["labels"]
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise data_error(source, i, "completions", "expected a non-empty list of step strings")
    if not isinstance(labels, list) or not all(isinstance(b, bool) or b in (0, 1) for b in labels):
        raise data_error(source, i, "labels", "expected a list of booleans (true = a good step), one per step")
    if len(labels) != len(steps):
        raise data_error(source, i, "labels", f"has {len(labels)} labels for {len(steps)} steps in 'completions'; "
                                              "give one label per step")
    if not isinstance(row["prompt"], (str, list)):
        raise data_error(source, i, "prompt", f"expected a string or a list of messages, got {type(row['prompt']).__name__}")


def tokenize_row(tokenizer, row: dict, config: PRMConfig, last_step_only: bool, source=None, i: int = 0) -> dict:
    ids, ends = stepwise_tokens(tokenizer, row["prompt"], row["completions"], config.step_separator, source=source, row_index=i)
    labels = [int(b) for b in row["labels"]]
    if last_step_only:
        ends, labels = ends[-1:], labels[-1:]
    if len(ids) > config.max_length:
        if not config.truncation:
            raise data_error(source, i, "completions", f"is {len(ids)} tokens with the prompt, longer than max_length="
                                                       f"{config.max_length}; raise max_length or set truncation=true")
        kept = [k for k, end in enumerate(ends) if end < config.max_length]
        if not kept:
            raise data_error(source, i, "completions", f"no labelled step fits in max_length={config.max_length} "
                                                       "tokens; raise max_length")
        ids, ends, labels = ids[:config.max_length], [ends[k] for k in kept], [labels[k] for k in kept]
    return {"input_ids": ids, "positions": ends, "labels": labels, "row": i}


def load_items(tokenizer, source: str, split: str | None, config: PRMConfig, is_eval: bool = False) -> list[dict]:
    rows = load_rows(source, split, options=config)
    if not rows:
        raise data_error(source, None, None, "no rows; expected stepwise rows (prompt, completions, labels)")
    last_only = config.train_on_last_step_only and not is_eval
    items = []
    for i, row in enumerate(rows):
        check_row(row, source, i)
        items.append(tokenize_row(tokenizer, row, config, last_only, source, i))
    return items


# ------------------------------------------------------------------------------------- algorithm


def collate_steps(items: list[dict], pad_token_id: int) -> dict:
    """Right-padded rows with `labels` (-100 except at each labelled step's last token)."""
    width = max(len(item["input_ids"]) for item in items)
    input_ids = torch.full((len(items), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    for r, item in enumerate(items):
        n = len(item["input_ids"])
        input_ids[r, :n] = torch.tensor(item["input_ids"])
        attention_mask[r, :n] = 1
        labels[r, item["positions"]] = torch.tensor(item["labels"], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "num_steps": int((labels != IGNORE_INDEX).sum()), "num_tokens": int(attention_mask.sum())}


class ProcessRewardModeling(Algorithm):
    """Summed cross-entropy of the step labels; the loop divides by the step's number of labelled steps."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def collate(self, items: list[dict]) -> dict:
        return collate_steps(items, self.pad_token_id)

    def batch_weight(self, batch: dict) -> float:
        return batch["num_steps"]

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        select = batch["labels"] != IGNORE_INDEX
        step_logits, labels = logits[select].float(), batch["labels"][select]
        loss = torch.nn.functional.cross_entropy(step_logits, labels, reduction="sum")
        with torch.no_grad():
            right = step_logits.argmax(-1) == labels
            bad = labels == 0
            metrics = {"accuracy": (right.sum(), labels.numel()), "bad_step_accuracy": ((right & bad).sum(), bad.sum())}
        return loss, metrics


def build_prm(config: PRMConfig, pad_token_id: int):
    """The causal LM (or a saved PRM) as a 2-label token classifier on the CPU; its config records the separator."""
    from transformers import AutoModelForTokenClassification

    from posttrain.models.loading import DTYPES, _hub_error, resolve_model_path
    from posttrain.models.reward_model import _quiet_transformers

    check_own_loader(config, "for a process reward model (a token classifier)")
    try:
        with _quiet_transformers():  # the new score head and the unused lm_head are expected
            model = AutoModelForTokenClassification.from_pretrained(
                resolve_model_path(config.model), num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
                dtype=DTYPES[dtype_for(config)], trust_remote_code=config.trust_remote_code,
                attn_implementation=config.attn_implementation)
    except (OSError, ValueError) as exc:
        if "Unrecognized configuration class" in str(exc):
            raise UserError(f"transformers has no token-classification version of {config.model}'s architecture; "
                            "a PRM needs one (Llama, Qwen2, Mistral, GPT-2, ...)") from None
        raise _hub_error(config.model, exc) from None
    model.config.pad_token_id = pad_token_id
    setattr(model.config, SEPARATOR_KEY, config.step_separator)
    return no_dropout(model) if config.disable_dropout else model


# ------------------------------------------------------------------------------------------- run


def run_prm(config: PRMConfig) -> dict:
    """Train, evaluate and save to output_dir/final; returns the last logged metrics."""
    _, tokenizer = start_run(config)
    separator_ids(tokenizer, config.step_separator)
    train_items = load_items(tokenizer, config.dataset, config.dataset_split, config)
    eval_items = load_items(tokenizer, config.eval_dataset, None, config, is_eval=True) if config.eval_dataset else []
    algorithm = ProcessRewardModeling(tokenizer.pad_token_id)
    source = OfflineSource(train_items, algorithm.collate, config.batch_size, config.gradient_accumulation_steps,
                           config.seed, what="stepwise rows")
    try:
        return train(config, build_model=lambda: build_prm(config, tokenizer.pad_token_id), tokenizer=tokenizer,
                     algorithm=algorithm, source=source, eval_items=eval_items)
    finally:
        distributed.cleanup()
