"""Losses and advantages: pure tensor functions (no models, no I/O, no config objects)."""

from posttrain.losses.sft import count_tokens, sft_loss

__all__ = ["count_tokens", "sft_loss"]
