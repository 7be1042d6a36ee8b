"""Attention over a shared prefix: a prompt computed once for all of its completions.

Preference data scores two or more completions of one prompt (chosen and rejected for DPO, K ranked
completions for a reward model). `pack_groups` lays each group out as its shared prefix once, then
the rest of each sequence, several groups per row; `shared_prefix_sdpa` (registered with
transformers' AttentionInterface) lets every sequence see the prefix and its own tokens only, with
the positions it has alone. The result equals scoring each sequence separately, without the work on
padding and on repeated prompts.

The layout of sequence s: row `rows[s]`; prefix at [prefix_starts[s], prefix_ends[s]); its own rest
at [starts[s], ends[s]); `token_cols[s][i]` is the column of its token i (so the token before a
target token t, whose hidden state predicts it, is at token_cols[s][t - 1]).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from posttrain.data.collate import pack_best_fit

SHARED_PREFIX = "posttrain_shared_prefix_sdpa"


def last_index(ids: list[int], pad_token_id: int | None) -> int:
    """transformers' pooling position: the rightmost token that is not the pad token (the last one if all are)."""
    for t in range(len(ids) - 1, -1, -1):
        if ids[t] != pad_token_id:
            return t
    return len(ids) - 1


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
    token_cols: list[list[int]] = [[] for _ in range(n)]
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
                token_cols[s] = list(range(prefix_at, prefix_at + p)) + list(range(at, at + rest))
                rests.append(rest)
                at += rest
            row_groups.append((prefix_at, p, rests))
        position_ids[r, at:] = torch.arange(width - at)
        layout.append(row_groups)
    batch = {k: torch.tensor(v, dtype=torch.long) for k, v in fields.items()}
    # (the attention reads the layout, not this mask; it keeps models that warn about a missing mask quiet)
    attention_mask = (torch.arange(width)[None, :] < torch.tensor([sum(sizes[i] for i in b) for b in bins])[:, None]).long()
    batch.update(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, prefix_groups=layout,
                 token_cols=token_cols, num_tokens=sum(len(s) for g in groups for s in g))
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


def _register() -> None:
    global _REGISTERED
    if not _REGISTERED:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(SHARED_PREFIX, shared_prefix_sdpa)
        AttentionMaskInterface.register(SHARED_PREFIX, lambda *args, **kwargs: None)  # the layout is the mask
        _REGISTERED = True


def use_shared_prefix_attention(model) -> bool:
    """Switch an sdpa / eager model to shared_prefix_sdpa for good; False (unchanged) for other implementations."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "_attn_implementation", None) not in ("sdpa", "eager", SHARED_PREFIX):
        return False
    _register()
    base.set_attn_implementation(SHARED_PREFIX)
    return base.config._attn_implementation == SHARED_PREFIX


@contextlib.contextmanager
def shared_prefix_attention(model):
    """Within this context the model runs shared_prefix_sdpa (a forward given `prefix_groups` sees
    the layout); outside it keeps its own implementation, so generation and its masks are untouched.
    Only for sdpa / eager models (check with `can_share_prefix`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    _register()
    previous = base.config._attn_implementation
    base.config._attn_implementation = SHARED_PREFIX  # the attention modules read the shared config per call
    try:
        yield
    finally:
        base.config._attn_implementation = previous


def can_share_prefix(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base.config, "_attn_implementation", None) in ("sdpa", "eager")
