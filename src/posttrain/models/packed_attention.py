"""Attention for packed rows that does no work across examples.

With packed rows and `sdpa`, transformers builds a block-diagonal causal mask of the whole row
(length L) and attention costs L^2 per row, most of it masked out. This implementation (registered
with transformers' AttentionInterface as "posttrain_packed_sdpa") runs causal `sdpa` on each
example of each row separately: sum(len_i^2 / 2) work instead of L^2, the varlen idea of
FlashAttention, in plain PyTorch on any device.

A forward call opts in by passing `packed_segments=[[(start, end), ...] per row]` (from the
collator); any other call (evaluation without segments, generation with a KV cache) falls back to
transformers' own sdpa with the usual mask, so the model behaves exactly as before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NAME = "posttrain_packed_sdpa"
_REGISTERED = False


def segments_of(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the (start, end) spans that restart at position 0 (a pad tail that keeps counting
    belongs to the last span, where causal attention keeps it from touching real tokens)."""
    out = []
    for row in position_ids.tolist():
        starts = [i for i, p in enumerate(row) if p == 0] or [0]
        if starts[0] != 0:
            starts.insert(0, 0)
        out.append(list(zip(starts, starts[1:] + [len(row)])))
    return out


def packed_sdpa_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None, **kwargs):
    """(batch, heads, L, dim) inputs -> (batch, L, heads, dim) output, as transformers expects."""
    segments = kwargs.pop("packed_segments", None)
    if segments is None or query.shape[2] != key.shape[2]:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs)
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    rows = []
    for b, spans in enumerate(segments):
        parts = [
            F.scaled_dot_product_attention(query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e],
                                           dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=gqa)
            for s, e in spans
        ]
        rows.append(torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
    out = torch.cat(rows, dim=0) if len(rows) > 1 else rows[0]
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    global _REGISTERED
    if not _REGISTERED:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(NAME, packed_sdpa_forward)
        AttentionMaskInterface.register(NAME, sdpa_mask)
        _REGISTERED = True


def use_packed_attention(model) -> bool:
    """Switch an sdpa / eager model to the packed implementation; False (unchanged) for others,
    e.g. flash_attention_2, which already reads packed position_ids as varlen boundaries."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager", NAME):
        return False
    register()
    base.set_attn_implementation(NAME)
    return base.config._attn_implementation == NAME
