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
import torch.nn.functional as F

from posttrain.errors import UserError

POOLINGS = ("last", "mean")
OFFSET_KEY = "reward_offset"
POOLING_KEY = "reward_pooling"
SHARED_PREFIX = "posttrain_shared_prefix_sdpa"


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
                      trust_remote_code: bool = False, pooling: str | None = None):
    """AutoModelForSequenceClassification with one output, from a causal LM or a saved reward model.

    `config.pad_token_id` is set (the pooling needs it); `pooling`, when given, is recorded in the config.
    """
    from transformers import AutoModelForSequenceClassification

    from posttrain.models.loading import DTYPES, _hub_error, resolve_model_path

    path = resolve_model_path(name)
    try:
        with _quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError) as exc:
        if "Unrecognized configuration class" in str(exc):
            raise UserError(f"transformers has no sequence-classification version of {name}'s architecture; "
                            "a reward model needs one (Llama, Qwen2, Mistral, GPT-2, ...)") from None
        raise _hub_error(name, exc) from None
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
    rewards = pool(position_scores(model, **inputs), batch, pooling)
    return rewards + reward_offset(model) if offset else rewards


# ------------------------------------------------------------------------------------------ layout


def last_index(ids: list[int], pad_token_id: int | None) -> int:
    """transformers' pooling position: the rightmost token that is not the pad token (the last one if all are)."""
    for t in range(len(ids) - 1, -1, -1):
        if ids[t] != pad_token_id:
            return t
    return len(ids) - 1


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


def shared_prefix(sequences: list[list[int]]) -> int:
    """Tokens that all of a batch element's sequences start with (at least one token of each left over)."""
    if len(sequences) < 2:
        return 0
    n, limit = 0, min(len(s) for s in sequences) - 1
    while n < limit and all(s[n] == sequences[0][n] for s in sequences[1:]):
        n += 1
    return n


def pack_groups(groups: list[list[list[int]]], pad_token_id: int, capacity: int | None = None) -> dict:
    """Packed layout: each group (the sequences of one batch element) as its shared prefix once, then
    the rest of each sequence; groups packed into rows of up to `capacity` tokens (best-fit decreasing),
    or all into one row when capacity is None (no padding at all: attention works per sequence, so a
    long row costs nothing extra).

    Positions restart per group and each sequence's rest continues from the prefix, so every token has
    the position it has alone; `prefix_groups` tells the attention (shared_prefix_sdpa) which spans
    see which. Sequences are numbered in the order given (group by group).
    """
    from posttrain.data.collate import pack_best_fit

    prefixes = [shared_prefix(g) for g in groups]
    sizes = [p + sum(len(s) - p for s in g) for p, g in zip(prefixes, groups)]
    bins = [list(range(len(groups)))] if capacity is None else pack_best_fit(sizes, max(capacity, max(sizes)))
    first = [0]
    for g in groups:
        first.append(first[-1] + len(g))
    n = first[-1]
    width = max(sum(sizes[i] for i in b) for b in bins)
    input_ids = torch.full((len(bins), width), pad_token_id, dtype=torch.long)
    position_ids = torch.zeros((len(bins), width), dtype=torch.long)
    fields = {k: [0] * n for k in ("rows", "prefix_starts", "prefix_ends", "starts", "ends", "last")}
    layout = []
    for r, b in enumerate(bins):
        at, row_groups = 0, []
        for i in b:
            p, g = prefixes[i], groups[i]
            input_ids[r, at:at + p] = torch.tensor(g[0][:p], dtype=torch.long)
            position_ids[r, at:at + p] = torch.arange(p)
            prefix_at, at, rests = at, at + p, []
            for k, seq in enumerate(g):
                rest = len(seq) - p
                input_ids[r, at:at + rest] = torch.tensor(seq[p:], dtype=torch.long)
                position_ids[r, at:at + rest] = torch.arange(p, len(seq))
                t = last_index(seq, pad_token_id)  # in the prefix (all-pad rest) or in this sequence's rest
                s = first[i] + k
                fields["rows"][s], fields["prefix_starts"][s], fields["prefix_ends"][s] = r, prefix_at, prefix_at + p
                fields["starts"][s], fields["ends"][s] = at, at + rest
                fields["last"][s] = prefix_at + t if t < p else at + t - p
                rests.append(rest)
                at += rest
            row_groups.append((prefix_at, p, rests))
        position_ids[r, at:] = torch.arange(width - at)
        layout.append(row_groups)
    batch = {k: torch.tensor(v, dtype=torch.long) for k, v in fields.items()}
    # (the attention reads the layout, not this mask; it keeps models that warn about a missing mask quiet)
    attention_mask = (torch.arange(width)[None, :] < torch.tensor([sum(sizes[i] for i in b) for b in bins])[:, None]).long()
    batch.update(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, prefix_groups=layout,
                 num_tokens=sum(len(s) for g in groups for s in g))
    return batch


# --------------------------------------------------------------------------------------- attention


def shared_prefix_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None, **kwargs):
    """Causal attention in which each sequence of a group sees the group's prefix and its own tokens
    only: one sdpa call per sequence on [prefix, rest]. (batch, heads, L, dim) in, (batch, L, heads, dim) out.

    Without `prefix_groups` (generation, other callers) it is transformers' sdpa.
    """
    groups = kwargs.pop("prefix_groups", None)
    if groups is None or query.shape[2] != key.shape[2]:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs)
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    width = query.shape[2]
    rows = []
    for b, row_groups in enumerate(groups):
        sizes = [n for _, p, rests in row_groups for n in [p] + rests]
        used = sum(sizes)
        # one split per tensor (its backward is one cat), not a slice per piece (each a full-size zero grad)
        q, k, v = (t[b:b + 1].split(sizes + ([width - used] if used < width else []), dim=2) for t in (query, key, value))
        pieces, at = [], 0
        for _, p, rests in row_groups:
            head, at = at, at + 1 + len(rests)
            for j in range(len(rests)):
                part = [head, head + 1 + j] if p else [head + 1 + j]
                qq, kk, vv = (torch.cat([t[i] for i in part], dim=2) if len(part) > 1 else t[part[0]] for t in (q, k, v))
                out = F.scaled_dot_product_attention(qq, kk, vv, dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=gqa)
                pieces.append(out if j == 0 else out[:, :, p:])  # the prefix's output once (it is the same for every j)
        if used < width:
            pieces.append(query.new_zeros(1, query.shape[1], width - used, query.shape[3]))  # pad tail: never read
        rows.append(torch.cat(pieces, dim=2))
    out = torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]
    return out.transpose(1, 2).contiguous(), None


_REGISTERED = False


def use_shared_prefix_attention(model) -> bool:
    """Switch an sdpa / eager model to shared_prefix_sdpa; False (unchanged) for other implementations."""
    global _REGISTERED
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "_attn_implementation", None) not in ("sdpa", "eager", SHARED_PREFIX):
        return False
    if not _REGISTERED:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(SHARED_PREFIX, shared_prefix_sdpa)
        AttentionMaskInterface.register(SHARED_PREFIX, lambda *args, **kwargs: None)  # the layout is the mask
        _REGISTERED = True
    base.set_attn_implementation(SHARED_PREFIX)
    return base.config._attn_implementation == SHARED_PREFIX


@torch.no_grad()
def score_texts(model, tokenizer, prompts: list, completions: list, batch_size: int = 16,
                offset: bool = True) -> list[float]:
    """Rewards of (prompt, completion) pairs (strings or message lists), tokenized as in training."""
    from posttrain.data.tokenize import tokenize_example

    device = next(model.parameters()).device
    pooling = reward_pooling(model)
    was_training = model.training
    model.eval()
    out: list[float] = []
    for i in range(0, len(prompts), batch_size):
        seqs = [tokenize_example(tokenizer, {"prompt": p, "completion": c}, max_length=None, truncation=False)["input_ids"]
                for p, c in zip(prompts[i:i + batch_size], completions[i:i + batch_size])]
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                 for k, v in collate_sequences(seqs, tokenizer.pad_token_id).items()}
        out += sequence_rewards(model, batch, pooling, offset=offset).tolist()
    model.train(was_training)
    return out
