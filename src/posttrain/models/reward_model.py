"""Reward models: a causal-LM backbone with a scalar `score` head, as a Hugging Face sequence classifier.

`load_reward_model` builds `AutoModelForSequenceClassification(num_labels=1)` from a causal LM (the
head starts random) or reloads a trained one, so `final/` is a plain transformers model.

Pooling. `last` (the default) reads the score at the rightmost token that is not the pad token,
which is exactly the rule of transformers' `*ForSequenceClassification.forward` (and so of TRL):
plain `AutoModelForSequenceClassification.from_pretrained(final/)` returns the same scores. When the
tokenizer's pad token is its eos token, a trailing eos therefore counts as padding and the score is
read at the token before it. `mean` averages the per-token scores over the sequence's real tokens
(equal to scoring the mean hidden state: the head is linear with no bias); plain transformers does
not know it, so a mean-pooled model must be scored with `sequence_rewards` (the choice is stored in
config.json as `reward_pooling`).

Offset. Rewards are defined up to an additive constant (Bradley-Terry sees only differences).
InstructGPT adds a bias after training so that a reference set has mean reward 0 (seed 003 L1697).
The `score` heads of Llama, Qwen2, GPT-2 and most causal LMs are `Linear(bias=False)`, so a bias
saved in the weights would be dropped by the HF loader, and no exact fold into the weights exists
(the final norm leaves no constant feature). The offset is therefore stored in config.json as
`reward_offset` and added by `sequence_rewards(..., offset=True)` / `score_texts`. Plain
transformers loading gives scores shifted by that constant; every pairwise difference, every
ranking and the Bradley-Terry probabilities are unchanged.

Sequences are laid out as spans of rows: sequence s lies in row `rows[s]` at [starts[s], ends[s])
and is scored at position `last[s]`. A padded batch has one sequence per row from 0; a packed batch
(several sequences per row, attention kept inside each) uses the same fields.
"""

from __future__ import annotations

import contextlib

import torch

from posttrain.data.collate import to_device
from posttrain.data.shared_prefix import last_index
from posttrain.errors import UserError
from posttrain.models import last_layer
from posttrain.models.sharding import batch_starts, dummy_forward, reshard, shard_frozen

POOLINGS = ("last", "mean")
# What to give where a trained reward model is expected (ppo's reward_model=, reward_model:path=).
REWARD_MODEL_HINT = "give the final/ directory of a `posttrain rm` run (or any sequence classifier with num_labels=1)"
OFFSET_KEY = "reward_offset"
POOLING_KEY = "reward_pooling"
INPUT_KEY = "reward_input"  # what the model scores; "trajectory_step" for a step reward model R_φ(o_t, a_t, o_{t+1})
TRAJECTORY_STEP = "trajectory_step"


@contextlib.contextmanager
def _quiet_transformers():
    """Loading a causal LM as a classifier reports the new `score` head and the unused `lm_head`; expected here."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def load_reward_model(name: str, pad_token_id: int | None, dtype: str = "float32", device="cpu",
                      trust_remote_code: bool = False, pooling: str | None = None, option: str = "model",
                      hint: str | None = None, **pretrained):
    """AutoModelForSequenceClassification with one output, from a causal LM or a saved reward model (or an
    adapter-only directory: its base with the adapter merged).

    `config.pad_token_id` is set (the pooling needs it); `pooling`, when given, is recorded in the config.
    Errors name `option`, the config key that gave `name`, and say `hint` (as `resolve_model_path`).
    `pretrained` goes to from_pretrained (attn_implementation).
    """
    from transformers import AutoModelForSequenceClassification

    from posttrain.callables import is_object_spec, python_object
    from posttrain.models.loading import DTYPES, _hub_error, adapter_base, resolve_model_path, with_adapter

    if is_object_spec(name):  # a reward model object given to the Python API, used (and trained) as it is
        model = python_object(name, option)[0]
        if not hasattr(model, "score"):
            raise UserError(f"{option}: a reward model object is a *ForSequenceClassification model with num_labels=1, "
                            f"got {type(model).__name__}; or pass the directory of a causal LM, which gets a new score head")
        return _loaded(model, pad_token_id, pooling, device)
    path = resolve_model_path(name, option, hint)
    if adapter_base(path):
        def load_base(base: str, opt: str):
            return load_reward_model(base, pad_token_id, dtype, device, trust_remote_code, pooling, opt, **pretrained)

        return with_adapter(path, load_base, option, keep_adapter=False)
    try:
        with _quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code, **pretrained)
    except (OSError, ValueError, RuntimeError) as exc:
        if "Unrecognized configuration class" in str(exc):
            raise UserError(f"transformers has no sequence-classification version of {name}'s architecture; "
                            "a reward model needs one (Llama, Qwen2, Mistral, GPT-2, ...)") from None
        raise _hub_error(name, exc, option) from None
    return _loaded(model, pad_token_id, pooling, device)


def _loaded(model, pad_token_id: int | None, pooling: str | None, device):
    """A reward model with its score head checked, pad token and pooling recorded, on `device`."""
    if not hasattr(model, "score"):
        raise UserError(f"{type(model).__name__} has no `score` head; reward models need a causal-LM backbone")
    config = model.config.get_text_config()
    if pad_token_id is not None:
        config.pad_token_id = model.config.pad_token_id = pad_token_id
    if pooling is not None:
        model.config.reward_pooling = pooling
    return model.to(device)


def score_head(model):
    """The `score` module (through a peft wrapper too; under LoRA it is peft's trainable copy)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.score


def reward_offset(model) -> float:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return float(getattr(base.config, OFFSET_KEY, 0.0) or 0.0)


def reward_pooling(model) -> str:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base.config, POOLING_KEY, None) or "last"


def position_scores(model, **inputs) -> torch.Tensor:
    """The head's score at every position, (rows, length) float32, from one forward of the whole model.

    The model runs as a whole (so FSDP and peft hooks fire); a forward hook on the head keeps the
    per-position scores that transformers computes before it pools them.
    """
    captured = []
    handle = score_head(model).register_forward_hook(lambda _m, _args, out: captured.append(out))
    try:
        model(**inputs, use_cache=False)
    finally:
        handle.remove()
    return captured[0][..., 0].float()


def pool(scores: torch.Tensor, batch: dict, pooling: str = "last") -> torch.Tensor:
    """(sequences,) rewards from per-position scores, for the span layout of the module docstring."""
    rows = batch["rows"]
    if pooling == "last":
        return scores[rows, batch["last"]]
    positions = torch.arange(scores.shape[1], device=scores.device)
    inside = (positions >= batch["starts"][:, None]) & (positions < batch["ends"][:, None])
    if "prefix_starts" in batch:  # packed: the shared prefix is part of every sequence of its group
        inside |= (positions >= batch["prefix_starts"][:, None]) & (positions < batch["prefix_ends"][:, None])
    return (scores[rows] * inside).sum(-1) / inside.sum(-1)


def sequence_rewards(model, batch: dict, pooling: str = "last", offset: bool = False) -> torch.Tensor:
    """Rewards of the batch's sequences; `offset=True` adds the stored reward offset (for scoring, not training)."""
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids", "prefix_groups") if k in batch}
    if pooling == "last" and last_layer.supports(model):  # the last layer only where the score is read
        with last_layer.pooled_last_layer(model, batch["rows"], batch["last"], *last_layer.key_positions(batch)):
            scores = position_scores(model, **inputs)
    else:
        scores = position_scores(model, **inputs)
    rewards = pool(scores, batch, pooling)
    return rewards + reward_offset(model) if offset else rewards


# ------------------------------------------------------------------------------------------ layout


def collate_sequences(sequences: list[list[int]], pad_token_id: int) -> dict:
    """Right-padded batch, one sequence per row: input_ids, attention_mask, and the span fields."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for r, seq in enumerate(sequences):
        input_ids[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[r, :len(seq)] = 1
    lengths = [len(s) for s in sequences]
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "rows": torch.arange(len(sequences)),
        "starts": torch.zeros(len(sequences), dtype=torch.long),
        "ends": torch.tensor(lengths, dtype=torch.long),
        "last": torch.tensor([last_index(s, pad_token_id) for s in sequences], dtype=torch.long),
        "num_tokens": sum(lengths),
    }


@torch.no_grad()
def score_sequences(model, sequences: list[list[int]], pad_token_id: int, batch_size: int = 16, offset: bool = True) -> list[float]:
    """Rewards of token sequences, `batch_size` at a time, with the model's own pooling (and stored offset).
    Under torchrun a frozen reward model is sharded (`shard_frozen`): every process calls this for its
    own sequences (none is fine) and each holds 1/N of the model."""
    model = shard_frozen(model)
    device = next(model.parameters()).device
    pooling = reward_pooling(model)
    was_training = model.training
    model.eval()
    out: list[float] = []
    for i in batch_starts(model, len(sequences), batch_size):
        if i is None:
            dummy_forward(model)
            continue
        batch = to_device(collate_sequences(sequences[i:i + batch_size], pad_token_id), device)
        out += sequence_rewards(model, batch, pooling, offset=offset).tolist()
    reshard(model)
    model.train(was_training)
    return out


def score_texts(model, tokenizer, prompts: list, completions: list, batch_size: int = 16,
                offset: bool = True) -> list[float]:
    """Rewards of (prompt, completion) pairs (strings or message lists), tokenized as in training."""
    from posttrain.data.tokenize import tokenize_example

    seqs = [tokenize_example(tokenizer, {"prompt": p, "completion": c}, max_length=None, truncation=False)["input_ids"]
            for p, c in zip(prompts, completions)]
    return score_sequences(model, seqs, tokenizer.pad_token_id, batch_size, offset)
