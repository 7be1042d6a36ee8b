"""A KV cache for sampling: Hugging Face's `DynamicCache` with preallocated layers.

`DynamicLayer` grows by `torch.cat` every step, which copies the whole cache each token (on CPU
that was a fifth of the decode time). `PreallocatedLayer` writes each step's keys and values into
a buffer sized for prompt + max_new_tokens and hands the model a view of the filled part, so the
attention still only reads what exists. Everything else (`get_seq_length`, mask sizes, batch
selection for dropping finished rows) keeps the `DynamicLayer` meaning.

Models whose cache is not plain full attention (sliding windows, linear attention, ...) keep
Hugging Face's own layers; the sampler then also lets Hugging Face build the attention masks.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A full-attention cache layer backed by a buffer of `capacity` positions (grows if exceeded)."""

    def __init__(self, capacity: int):
        super().__init__()
        self.is_initialized = False  # set by the base class from transformers 4.57 on; 4.56 has no such flag
        self.capacity = capacity
        self.length = 0
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        batch, heads, _, key_dim = key_states.shape
        self._key_buffer = key_states.new_empty(batch, heads, self.capacity, key_dim)
        self._value_buffer = value_states.new_empty(batch, value_states.shape[1], self.capacity, value_states.shape[-1])
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, end = self.length, self.length + key_states.shape[-2]
        if end > self.capacity:
            self._grow(end)
        self._key_buffer[:, :, start:end] = key_states
        self._value_buffer[:, :, start:end] = value_states
        self.length = end
        self._refresh_views()
        return self.keys, self.values

    def _grow(self, needed: int) -> None:
        self.capacity = max(needed, 2 * self.capacity)
        for name in ("_key_buffer", "_value_buffer"):
            old = getattr(self, name)
            new = old.new_empty(*old.shape[:2], self.capacity, old.shape[-1])
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)

    def _refresh_views(self) -> None:
        self.keys = self._key_buffer[:, :, : self.length]
        self.values = self._value_buffer[:, :, : self.length]

    def get_seq_length(self) -> int:
        return self.length

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._key_buffer = self._key_buffer.repeat_interleave(repeats, dim=0)
            self._value_buffer = self._value_buffer.repeat_interleave(repeats, dim=0)
            self._refresh_views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._key_buffer = self._key_buffer.index_select(0, indices)
            self._value_buffer = self._value_buffer.index_select(0, indices)
            self._refresh_views()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        self.length = max(0, self.length + tokens_to_remove)
        if self.is_initialized:
            self._refresh_views()

    def reset(self) -> None:
        self.length = 0
        self._key_buffer = self._value_buffer = None
        super().reset()


def make_cache(model, capacity: int) -> tuple[DynamicCache, bool]:
    """A cache for `model` with room for `capacity` positions per row.

    Returns (cache, plain): `plain` is True when every layer is plain full attention and so uses a
    `PreallocatedLayer`; the sampler may then pass its own attention masks.
    """
    cache = DynamicCache(config=model.config)
    layers = getattr(cache, "layers", None)
    if layers and all(type(layer) is DynamicLayer for layer in layers):
        cache.layers = [PreallocatedLayer(capacity) for _ in layers]
        return cache, True
    return cache, False
