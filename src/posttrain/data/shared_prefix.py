"""The shared-prefix layout: a prompt laid out once for all of its completions.

Preference data scores two or more completions of one prompt (chosen and rejected for DPO, K ranked
completions for a reward model). `pack_groups` lays each group out as its shared prefix once, then
the rest of each sequence, several groups per row; the attention kernel
`models.shared_prefix_attention.shared_prefix_sdpa` lets every sequence see the prefix and its own
tokens only, with the positions it has alone. The result equals scoring each sequence separately, without the work on
padding and on repeated prompts.

The layout of sequence s: row `rows[s]`; prefix at [prefix_starts[s], prefix_ends[s]); its own rest
at [starts[s], ends[s]); `token_cols[s][i]` is the column of its token i (so the token before a
target token t, whose hidden state predicts it, is at token_cols[s][t - 1]).
"""

from __future__ import annotations

import torch

from posttrain.data.collate import pack_best_fit


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
