"""Compute the last decoder layer only where its output is read.

A reward model pooled at each sequence's last token reads the final hidden state at one position
per sequence. Every earlier layer is needed everywhere (later tokens attend to earlier ones), but
the last layer's queries, attention output, MLP and norms matter only at the pooled positions; its
keys and values are still needed at every position they attend to. `pooled_last_layer` swaps the
last layer's forward, for one call, for one that does exactly that: with 4 layers it skips about a
fifth of the work, and the pooled hidden states are the same as the full forward's (tested).

Llama-style layers only (Llama, Qwen2, Mistral: pre-norm, q/k/v/o projections, rotary embeddings,
full attention); `supports` says when, and callers fall back to the full forward otherwise. Not
under gradient checkpointing: its recomputation in backward would run the layer's usual forward.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

import torch
import torch.nn.functional as F

_SUPPORTED = ("LlamaModel", "Qwen2Model", "MistralModel")


def _body(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "model", None), base


def supports(model) -> bool:
    body, base = _body(model)
    if body is None or type(body).__name__ not in _SUPPORTED:
        return False
    # Checked per batch, so only where transformers sets the flag (the body, or each decoder layer in
    # v5) rather than walking every module; reading the flag avoids the deprecated property's warning.
    if any(getattr(m, "gradient_checkpointing", False) for m in (body, *body.layers)):
        return False
    config = base.config
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    attn = body.layers[-1].self_attn
    return (all(t == "full_attention" for t in layer_types) and not getattr(config, "sliding_window", None)
            and not hasattr(attn, "q_norm") and all(hasattr(attn, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj")))


def key_positions(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """For each sequence, the columns its pooled token attends to: (index, valid), both (N, K).

    Span layout of models/reward_model.py: sequence s lies in row rows[s], its prefix (if any) at
    [prefix_starts, prefix_ends), its own tokens from starts[s]; it is pooled at last[s]."""
    last, starts = batch["last"], batch["starts"]
    zeros = torch.zeros_like(last)
    prefix_start, prefix_end = batch.get("prefix_starts", zeros), batch.get("prefix_ends", zeros)
    in_prefix = last < prefix_end  # pooled inside the prefix (a sequence whose rest is all padding)
    prefix_len = torch.where(in_prefix, last - prefix_start + 1, prefix_end - prefix_start)
    rest_len = torch.where(in_prefix, zeros, last - starts + 1)
    j = torch.arange(int((prefix_len + rest_len).max()), device=last.device)[None, :]
    index = torch.where(j < prefix_len[:, None], prefix_start[:, None] + j, starts[:, None] + j - prefix_len[:, None])
    valid = j < (prefix_len + rest_len)[:, None]
    return torch.where(valid, index, 0), valid


@contextmanager
def pooled_last_layer(model, rows: torch.Tensor, cols: torch.Tensor, key_index: torch.Tensor, key_valid: torch.Tensor):
    """Within this context the last decoder layer computes its output at (rows, cols) only; the
    hidden states it returns elsewhere are its input, unchanged (not to be read)."""
    layer = _body(model)[0].layers[-1]
    layer.forward = functools.partial(_forward_at, layer, rows, cols, key_index, key_valid)
    try:
        yield
    finally:
        del layer.forward  # back to the class's forward


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _forward_at(layer, rows, cols, key_index, key_valid, hidden_states, attention_mask=None, position_ids=None,
                position_embeddings=None, **kwargs):  # kwargs: the (unused) cache, under its 4.x or 5.x name
    attn = layer.self_attn
    batch, length, _ = hidden_states.shape
    dim = attn.head_dim
    normed = layer.input_layernorm(hidden_states)
    cos, sin = position_embeddings  # (batch or 1, length, dim)
    cos, sin = cos.expand(batch, -1, -1), sin.expand(batch, -1, -1)
    keys = _rotate(attn.k_proj(normed).view(batch, length, -1, dim), cos[:, :, None], sin[:, :, None])
    values = attn.v_proj(normed).view(batch, length, -1, dim)
    query = attn.q_proj(normed[rows, cols]).view(len(rows), -1, dim)
    query = _rotate(query, cos[rows, cols][:, None], sin[rows, cols][:, None])
    gather = (rows[:, None], key_index)  # (N, K, kv_heads, dim), then heads first
    keys, values = keys[gather].transpose(1, 2), values[gather].transpose(1, 2)
    dropout = attn.attention_dropout if layer.training else 0.0
    out = F.scaled_dot_product_attention(query[:, :, None], keys, values, attn_mask=key_valid[:, None, None, :],
                                         dropout_p=dropout, scale=attn.scaling,
                                         enable_gqa=query.shape[1] != keys.shape[1])
    x = hidden_states[rows, cols] + attn.o_proj(out.reshape(len(rows), -1))
    x = x + layer.mlp(layer.post_attention_layernorm(x))
    return hidden_states.index_put((rows, cols), x)
