"""Attention over a shared prefix: each sequence of a group sees the group's prefix and its own tokens.

The layout (`data.shared_prefix.pack_groups`) puts a group's shared prefix once, then the rest of each
sequence; `shared_prefix_sdpa`, registered with transformers' AttentionInterface, reads that layout
from the forward call's `prefix_groups`, so the result equals scoring each sequence separately.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

SHARED_PREFIX = "posttrain_shared_prefix_sdpa"


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
