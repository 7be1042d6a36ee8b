"""Mixed precision for the training step: autocast (bf16 / fp16) around forward and loss, fp16's loss
scaling, and the optimizer step with gradient clipping that skips non-finite steps."""

from __future__ import annotations

import math

import torch

import posttrain.ranks as ranks


class Precision:
    """Autocast (bf16 / fp16) around forward and loss; fp16 adds loss scaling."""

    def __init__(self, mode: str, device: torch.device):
        self.device = device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
        self.scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self, optimizer, params, max_norm: float, loss_is_finite: bool = True, own_params=()) -> tuple[float, bool]:
        """Unscale, clip to max_norm (0: measure only), step; returns (the pre-clip gradient norm, whether
        the optimizer stepped). `own_params` (modules with an optimizer of their own) are clipped apart,
        their norm kept in `own_norm`. A non-finite loss or gradient norm skips the step: weights and optimizer
        state stay as they were. Under fp16 an overflowing gradient is the loss scaler's to handle as
        usual (it skips that step itself and lowers the scale), so only a non-finite loss counts there."""
        if self.scaler:
            self.scaler.unscale_(optimizer)
        norm, self.own_norm = (_clip(ps, max_norm) if ps else None for ps in (params, own_params))
        norm = norm if norm is not None else 0.0
        finite = loss_is_finite and (self.scaler is not None or all(math.isfinite(n) for n in (norm, self.own_norm or 0.0)))
        if self.scaler:
            if finite:
                self.scaler.step(optimizer)
            self.scaler.update()
        elif finite:
            optimizer.step()
        return norm, finite


def _clip(params: list, max_norm: float) -> float:
    return float(ranks.full_tensor(torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))))
