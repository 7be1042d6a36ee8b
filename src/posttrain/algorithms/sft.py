"""Supervised fine-tuning: token-level cross-entropy on the completion (assistant) tokens.

Reads input-output pairs: `prompt` + `completion`, `messages`, or `text` (standard or
conversational; chat templates applied). The loss is the mean over every completion token of the
global batch, accumulation and processes included, not a mean of per-sequence or per-micro-batch
means. `packing=true` concatenates examples into rows of up to max_length tokens
(best-fit decreasing) with position ids restarting per example, so attention never crosses two
examples and no pad token sits inside a row.

    posttrain sft dataset=data.jsonl model=Qwen/Qwen2.5-0.5B packing=true learning_rate=2e-5
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import torch

from posttrain.config import option
from posttrain.data.collate import IGNORE_INDEX, collate_rows, pack_examples
from posttrain.data.formats import LANGUAGE_MODELING, PROMPT_COMPLETION, validate
from posttrain.data.mapping import map_examples
from posttrain.data.tokenize import tokenize_example
from posttrain.errors import ConfigError, UserError
from posttrain.losses.sft import count_tokens, sft_loss
from posttrain.models.logprobs import logits_at
from posttrain.models.packed_attention import use_packed_attention
from posttrain.options import TokenizeOptions, TrainOptions, output_dir_option
from posttrain.tasks.sources import default_eval_source, load_rows
from posttrain.train import distributed
from posttrain.train.loop import Algorithm, train_offline
from posttrain.train.scaffold import start_run


@dataclass
class SFTConfig(TokenizeOptions, TrainOptions):
    output_dir: str = output_dir_option("sft")
    completion_only_loss: bool = option(True, "Loss on completion / assistant tokens only; false trains on every token (prompt included).")
    packing: bool = option(False, "Pack several examples into each row of up to max_length tokens (no padding inside a row; attention never crosses examples).")
    # issue 18: datasets
    dataset_text_field: str | None = option(None, "TRL's name for the column of plain text to train on (renamed to 'text'); dataset_columns is the general form.")
    streaming: bool = option(False, "Read the training data lazily (a datasets IterableDataset, shuffled in a buffer with the seed) instead of all up front; needs max_steps, and starts another pass when the data runs out.")

    def validate(self) -> None:
        super().validate()
        if self.streaming and self.max_steps <= 0:
            raise ConfigError("streaming=true reads the data lazily, so its length (and an epoch) is unknown: set max_steps "
                              "(as transformers' Trainer requires); num_epochs is not read")
        if self.streaming and self.packing:
            raise ConfigError("streaming=true cannot be combined with packing=true (packing sorts the whole set); drop one")


PRESETS: dict[str, dict] = {}


@torch.no_grad()
def check_packing_support(model) -> None:
    """Raise a UserError unless the model honours restarting position_ids as example boundaries."""
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(0)
    vocab = model.get_output_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (1, 8), generator=g, device=model.device)
    alone = model(input_ids=ids[:, 4:], use_cache=False).logits[0].float()
    packed = model(input_ids=ids, position_ids=torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]], device=model.device), use_cache=False).logits[0, 4:].float()
    mixed = model(input_ids=ids, use_cache=False).logits[0, 4:].float()
    model.train(was_training)
    if (packed - alone).abs().max() > 0.05 * (mixed - alone).abs().max():
        name = type(model.get_base_model() if hasattr(model, "get_base_model") else model).__name__
        raise UserError(f"packing=true but {name} lets attention cross example boundaries (it ignores restarting position_ids); set packing=false")


class SFT(Algorithm):
    """Cross-entropy summed over the trained tokens; the loop divides by the step's token count."""

    def __init__(self, pad_token_id: int, packing: bool = False):
        self.pad_token_id, self.packing = pad_token_id, packing
        self.segmented = False  # attention per packed example (no work across examples)

    def setup(self, model) -> None:
        if self.packing:
            check_packing_support(model)
            self.segmented = use_packed_attention(model)

    def collate(self, rows: list[list[dict]]) -> dict:
        return collate_rows(rows, self.pad_token_id)

    def batch_weight(self, batch: dict) -> float:
        return count_tokens(batch["labels"])

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        labels = batch["labels"]
        select = labels != IGNORE_INDEX
        extra = {"packed_segments": batch["segments"]} if self.segmented else {}
        logits = logits_at(model, select, input_ids=batch["input_ids"], position_ids=batch["position_ids"], **extra)
        return sft_loss(logits, labels[select]), {}


def load_examples(tokenizer, source: str, split: str | None, config: SFTConfig) -> list[dict]:
    """Read, validate and tokenize a dataset into {"input_ids", "completion_mask"} examples."""
    rows = load_rows(source, split, options=config)
    validate(rows, [LANGUAGE_MODELING, PROMPT_COMPLETION], source)
    return map_examples(example_maker(tokenizer, source, config), rows, num_proc=config.dataset_num_proc)


def example_maker(tokenizer, source: str, config: SFTConfig):
    """`f(row, row_index=i)` -> {"input_ids", "completion_mask"}: picklable, so Dataset.map can fingerprint it
    and run it in worker processes."""
    return functools.partial(tokenize_example, tokenizer, max_length=config.max_length, truncation=config.truncation,
                             completion_only=config.completion_only_loss, source=source)


def as_rows(examples: list[dict], config: SFTConfig) -> list[list[dict]]:
    """One example per row, or packed rows of up to max_length tokens."""
    return pack_examples(examples, config.max_length) if config.packing else [[ex] for ex in examples]


def run_sft(config: SFTConfig) -> dict:
    """Train, evaluate and save to output_dir; returns the last logged metrics."""
    if config.eval_dataset is None:
        config = dataclasses.replace(config, eval_dataset=default_eval_source(config.dataset))
    _, tokenizer = start_run(config)
    with distributed.joined_for_loading(config.device):
        algorithm, train_rows, eval_rows = _load(tokenizer, config)
    return train_offline(config, tokenizer=tokenizer, algorithm=algorithm, items=train_rows, eval_items=eval_rows,
                         what="packed rows" if config.packing else "examples")


def _load(tokenizer, config: SFTConfig):
    """(the algorithm, the training rows or stream, the eval rows)."""
    algorithm = SFT(tokenizer.pad_token_id, packing=config.packing)
    if config.streaming:  # a StepSource that tokenizes rows as the steps read them
        from posttrain.tasks.streams import StreamingSource, stream_rows

        make = example_maker(tokenizer, config.dataset, config)
        train_rows = StreamingSource(stream_rows(config.dataset, config.dataset_split, config),
                                     lambda row, i: [make(row, row_index=i)], algorithm.collate, config)
    else:
        train_rows = as_rows(load_examples(tokenizer, config.dataset, config.dataset_split, config), config)
    eval_rows = as_rows(load_examples(tokenizer, config.eval_dataset, None, config), config) if config.eval_dataset else []
    return algorithm, train_rows, eval_rows
