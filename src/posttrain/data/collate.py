"""Collators: tokenized examples -> padded tensors, and packing several examples into one row.

A row is a list of examples (`{"input_ids": [...], "completion_mask": [...]}`): one example when not
packing, several when packing. Every row is laid out the same way:

- `input_ids`:    the examples back to back, then pad tokens up to the longest row of the batch
                  (pads only at the tail, so packing is padding-free inside a row);
- `position_ids`: 0, 1, 2, ... restarting at 0 for each example (the pad tail goes on counting).
                  With no attention mask, transformers (>= 5) reads a restart as a sequence boundary
                  and builds a block-diagonal causal mask, so attention never crosses examples;
- `labels`:       already shifted: `labels[t]` is the token to predict at position t (the next token
                  of the same example, when that token is trained on) or -100. The last position of
                  each example predicts nothing, so no example learns from its neighbour;
- `segments`:     per row, the (start, end) span of each example (the last one takes the pad tail),
                  for attention that skips the work across examples (models/packed_attention.py).

No attention mask is needed for the pad tail either: attention is causal and pads come last.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

import torch

IGNORE_INDEX = -100


def to_device(batch: dict, device, non_blocking: bool = False) -> dict:
    """The batch with its tensors, and the fields that know how to move themselves (e.g.
    logprobs.TokenTargets), on `device`; other values (counts, lists) as they are."""
    return {k: v.to(device, non_blocking=non_blocking) if hasattr(v, "to") else v for k, v in batch.items()}


def shifted_labels(input_ids: Sequence[int], mask: Sequence[int]) -> list[int]:
    """labels[t] = input_ids[t+1] where mask[t+1] is 1, else -100; the last position is -100."""
    out = [tok if m else IGNORE_INDEX for tok, m in zip(input_ids[1:], mask[1:])]
    out.append(IGNORE_INDEX)
    return out


def collate_rows(rows: list[list[dict]], pad_token_id: int) -> dict:
    """Pad a batch of rows (each a list of examples) to the longest row; see the module docstring."""
    width = max(sum(len(ex["input_ids"]) for ex in row) for row in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    num_tokens, segments = 0, []
    for r, row in enumerate(rows):
        at, spans = 0, []
        for ex in row:
            n = len(ex["input_ids"])
            ids[r, at:at + n] = torch.tensor(ex["input_ids"], dtype=torch.long)
            pos[r, at:at + n] = torch.arange(n)
            labels[r, at:at + n] = torch.tensor(shifted_labels(ex["input_ids"], ex["completion_mask"]), dtype=torch.long)
            spans.append((at, at + n))
            at += n
        num_tokens += at
        last = int(pos[r, at - 1]) if at else -1
        pos[r, at:] = torch.arange(last + 1, last + 1 + width - at)
        spans[-1] = (spans[-1][0], width)
        segments.append(spans)
    return {"input_ids": ids, "position_ids": pos, "labels": labels, "num_tokens": num_tokens, "segments": segments}


def pack_best_fit(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing bin packing: indices of `lengths` grouped into bins of total <= capacity.

    Longest first, each into the open bin with the least room that still fits it (a new bin when
    none does). Deterministic: ties keep the input order. Raises if one length exceeds capacity.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"item {i} has length {n} > capacity {capacity}")
        at = bisect.bisect_left(free, (n, -1))
        if at < len(free):
            room, b = free.pop(at)
        else:
            room, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        if room - n > 0:
            bisect.insort(free, (room - n, b))
    return bins


def pack_examples(examples: list[dict], max_length: int) -> list[list[dict]]:
    """Rows of several examples each, every row at most max_length tokens (best-fit decreasing)."""
    bins = pack_best_fit([len(ex["input_ids"]) for ex in examples], max_length)
    return [[examples[i] for i in b] for b in bins]


def pad_sequences(sequences: list[list[int]], masks: list[list[int]], pad_token_id: int):
    """Right-padded (input_ids, attention_mask, target_mask), one sequence per row; `masks[i]` marks
    the target tokens of sequence i (1 = trained on)."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    target_mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for r, (seq, mask) in enumerate(zip(sequences, masks)):
        input_ids[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[r, :len(seq)] = 1
        target_mask[r, :len(seq)] = torch.tensor(mask, dtype=torch.bool)
    return input_ids, attention_mask, target_mask


@dataclass
class TokenTargets:
    """Which hidden state predicts which token, for any layout: the target tokens `ids` (N,), each
    predicted at (rows, cols) of the batch and belonging to sequence `sequence` (of `num_sequences`)."""

    rows: torch.Tensor
    cols: torch.Tensor
    ids: torch.Tensor
    sequence: torch.Tensor
    num_sequences: int

    def to(self, device, non_blocking: bool = False) -> "TokenTargets":
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return TokenTargets(move(self.rows), move(self.cols), move(self.ids), move(self.sequence), self.num_sequences)

    @classmethod
    def from_mask(cls, input_ids: torch.Tensor, target_mask: torch.Tensor) -> "TokenTargets":
        """One sequence per row: token t (where target_mask is 1) is predicted at position t - 1."""
        rows, cols = target_mask[:, 1:].bool().nonzero(as_tuple=True)  # cols = t - 1
        return cls(rows, cols, input_ids[rows, cols + 1], rows, input_ids.shape[0])
