from posttrain.models.loading import (
    DEFAULT_CHAT_TEMPLATE,
    apply_lora,
    is_peft,
    load_causal_lm,
    load_tokenizer,
    resolve_device,
    resolve_model_path,
    save_model,
)

__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "apply_lora",
    "is_peft",
    "load_causal_lm",
    "load_tokenizer",
    "resolve_device",
    "resolve_model_path",
    "save_model",
]
