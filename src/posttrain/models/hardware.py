"""Loading knobs that depend on the hardware or an optional package: the default weights dtype, the
attention implementation, 4-/8-bit quantization (QLoRA) and Liger kernels.

Each knob is checked before any weights load, so a GPU or package that is missing is one clear line
(exit 2), not a traceback from deep inside transformers.
"""

from __future__ import annotations

import importlib.util

import torch

from posttrain.errors import ConfigError

ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
FLASH_PACKAGES = {"flash_attention_2": ("flash_attn", "flash-attn"), "flash_attention_3": ("flash_attn_interface", "flash-attn-3")}
LIGER_ERROR = "use_liger_kernel needs the liger-kernel package and a CUDA GPU: pip install 'posttrain[liger]'"


def has_package(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def weights_dtype(dtype: str | None, device) -> str:
    """dtype=None (the default): bfloat16 on a CUDA GPU that supports it, float32 otherwise, so a CPU run
    computes exactly what it always did; any other value is kept."""
    if dtype is not None:
        return dtype
    device = torch.device(device)
    return "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"


def check_attn_implementation(name: str | None, device) -> None:
    """A ConfigError when `name` needs a GPU or package this run lacks (flash attention: CUDA + flash-attn;
    flex attention: a GPU, as PyTorch's FlexAttention has no backward pass on CPU)."""
    if name == "flex_attention" and torch.device(device).type != "cuda":
        raise ConfigError("attn_implementation=flex_attention needs a CUDA GPU (PyTorch's FlexAttention has no backward pass on CPU); "
                          "use attn_implementation=sdpa or eager on this machine")
    if name not in FLASH_PACKAGES:
        return
    module, package = FLASH_PACKAGES[name]
    if torch.device(device).type != "cuda":
        raise ConfigError(f"attn_implementation={name} needs a CUDA GPU, but the model runs on {torch.device(device).type}; "
                          "use attn_implementation=sdpa (or leave it unset) on this machine")
    if not has_package(module):
        raise ConfigError(f"attn_implementation={name} needs the {package} package, which is not installed: "
                          f"pip install {package}, or use attn_implementation=sdpa")


def check_liger(device) -> None:
    if torch.device(device).type != "cuda" or not has_package("liger_kernel"):
        raise ConfigError(LIGER_ERROR)


def apply_liger(model) -> None:
    """Liger's Triton kernels (RMSNorm, RoPE, SwiGLU, ...) patched into `model`'s architecture in place.
    posttrain computes its losses from the logits it selects, so Liger's fused linear cross-entropy
    (which needs labels passed to forward) is not what speeds it up; the per-layer kernels are."""
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(model=model)


def quantization_config(config, dtype: str):
    """The BitsAndBytesConfig that `load_in_4bit` / `load_in_8bit` (and the bnb_* keys) ask for, or None.
    The 4-bit compute dtype defaults to the weights dtype (as TRL's get_quantization_config does)."""
    if not (getattr(config, "load_in_4bit", False) or getattr(config, "load_in_8bit", False)):
        return None
    from transformers import BitsAndBytesConfig

    from posttrain.models.loading import DTYPES

    if config.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = DTYPES[config.bnb_4bit_compute_dtype or dtype]
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=config.bnb_4bit_quant_type, bnb_4bit_compute_dtype=compute,
                              bnb_4bit_use_double_quant=config.use_bnb_nested_quant)


def check_quantization(config) -> None:
    """QLoRA's rules: quantized weights cannot be trained, so load_in_4bit/8bit need lora=true; one of the two
    at a time; bitsandbytes installed; one process (FSDP does not shard bitsandbytes weights here)."""
    four, eight = getattr(config, "load_in_4bit", False), getattr(config, "load_in_8bit", False)
    if not (four or eight):
        return
    key = "load_in_4bit" if four else "load_in_8bit"
    if four and eight:
        raise ConfigError("load_in_4bit and load_in_8bit are both set; choose one")
    if not config.lora:
        raise ConfigError(f"{key}=true loads frozen quantized weights, which only LoRA adapters can train (QLoRA); set lora=true")
    if not has_package("bitsandbytes"):
        raise ConfigError(f"{key}=true needs the bitsandbytes package: pip install 'posttrain[quantization]'")
    from posttrain.ranks import world_size

    if world_size() > 1:
        raise ConfigError(f"{key}=true is for one process: FSDP2 here does not shard bitsandbytes weights; run without torchrun")


def is_quantized(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "quantization_method", None) is not None or getattr(base, "is_quantized", False)


def prepare_quantized(model, gradient_checkpointing: bool):
    """peft's preparation of a quantized model for adapter training (norms and head in float32, input
    grads on); gradient checkpointing only when the config asks for it."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                           gradient_checkpointing_kwargs={"use_reentrant": False})
