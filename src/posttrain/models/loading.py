"""Load a causal LM and its tokenizer by local path, the embedded default, or hub id; LoRA via peft."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from posttrain import hub
from posttrain.callables import is_object_spec, python_object
from posttrain.errors import UserError

# Used when a tokenizer ships without a chat template (e.g. GPT-2). The assistant turn ends with
# eos so a model trained on it learns to stop.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}
WEIGHT_DTYPES = ("float32", "bfloat16", "float16")  # a concrete dtype (no "auto"): for models loaded beside the policy
ADAPTER_CONFIG = "adapter_config.json"  # peft's file: a directory holding only LoRA adapters and the name of their base


def resolve_model_path(name: str, option: str = "model", hint: str | None = None) -> str:
    """'embedded' / 'embedded-judge' -> the models shipped in the package; an existing directory -> itself;
    else a hub id (see `_hub_model`). Errors name `option`, the config key the user set, and say `hint`
    (default: the choices of a causal LM)."""
    from posttrain.embedded import SHIPPED

    if is_object_spec(name):  # an object from the Python API reached a loader that reads directories only
        python_object(name, option)
        raise UserError(f"{option}: a model object is taken only where a causal LM is loaded; save it with "
                        f"save_pretrained and pass {option}= the directory")
    if name in SHIPPED:
        return str(SHIPPED[name])
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not (path / ADAPTER_CONFIG).is_file():
            raise UserError(f"{option} directory {path} has no config.json; point {option}= at a save_pretrained directory "
                            f"(or an adapter directory with {ADAPTER_CONFIG})")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"{option if option.endswith('path') else option + ' path'} not found: {name}; {hint or _choices(option)}")
    return _hub_model(name, option)


def _choices(option: str) -> str:
    return f"use {option}=embedded, a local directory, or a hub id like Qwen/Qwen2.5-0.5B"


def _hub_error(name: str, exc: Exception, option: str = "model") -> UserError:
    first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return UserError(f"could not load {option} '{name}' ({first}); use {option}=embedded, a local directory, or a reachable hub id")


# ------------------------------------------------------------------------------------- the hub


def _hub_model(name: str, option: str) -> str:
    """The hub id `name` while the hub answers; its cached snapshot directory when HF_HUB_OFFLINE=1 or
    the hub is out of reach; else a UserError at once."""
    offline = hub.offline()
    if not offline and hub.reachable():
        return name
    cached = _cached_snapshot(name)
    if cached:
        return cached
    if offline:
        raise UserError(f"{option} '{name}' is neither a local directory nor in the Hugging Face cache, and HF_HUB_OFFLINE=1 "
                        "allows no download; give a local directory, or unset HF_HUB_OFFLINE to download it")
    raise UserError(f"{option} '{name}' was not found locally and the Hugging Face hub ({hub.endpoint()}) could not be "
                    "reached; offline? set HF_HUB_OFFLINE=1 (models in the Hugging Face cache only) or give a local directory")


def _cached_snapshot(name: str) -> str | None:
    """The directory of `name`'s cached snapshot (main), or None when the cache has none."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:  # not cached, or not a valid repo id: either way nothing to load from the cache
        return None


def load_tokenizer(name: str, chat_template: str | None = None, trust_remote_code: bool = False, option: str = "model",
                   hint: str | None = None):
    from transformers import AutoTokenizer

    if is_object_spec(name):  # a model object from the Python API: its tokenizer object, or the one saved with it
        model, tok = python_object(name, option)
        if tok is None:
            return load_tokenizer(model.config.name_or_path, chat_template, trust_remote_code, option, hint)
        return _prepare_tokenizer(tok, chat_template)
    path = resolve_model_path(name, option, hint)
    if adapter_base(path) and not (Path(path) / "tokenizer_config.json").is_file():  # an adapter saved without its tokenizer
        path = resolve_model_path(adapter_base(path), f"{option}'s adapter base")
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _hub_error(name, exc, option) from None
    return _prepare_tokenizer(tok, chat_template)


def _prepare_tokenizer(tok, chat_template: str | None):
    """A chat template (the file `chat_template`, else the tokenizer's, else ours) and a pad token."""
    if chat_template:
        template_path = Path(chat_template)
        if not template_path.is_file():
            raise UserError(f"chat_template file not found: {chat_template}")
        tok.chat_template = template_path.read_text(encoding="utf-8")
    elif not getattr(tok, "chat_template", None):
        tok.chat_template = DEFAULT_CHAT_TEMPLATE
    if tok.pad_token_id is None:
        # Padding is always masked out, so reusing eos is safe and what TRL does.
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(name: str, dtype: str = "float32", device: str | torch.device = "cpu", trust_remote_code: bool = False,
                   option: str = "model", hint: str | None = None, keep_adapter: bool = False, **pretrained):
    """AutoModelForCausalLM from `name` (see resolve_model_path) in `dtype` on `device`; `pretrained` goes to
    from_pretrained (attn_implementation, quantization_config). An adapter-only directory loads its base and
    applies the adapter: merged into the base, or kept as a trainable peft model with `keep_adapter`."""
    from transformers import AutoModelForCausalLM

    if is_object_spec(name):  # a model object from the Python API: trained in place, in its own dtype (as TRL)
        return python_object(name, option)[0].to(device)
    path = resolve_model_path(name, option, hint)
    if adapter_base(path):
        return with_adapter(path, lambda base, opt: load_causal_lm(base, dtype, device, trust_remote_code, opt, **pretrained),
                            option, keep_adapter)
    if pretrained.get("quantization_config") is not None:
        pretrained["device_map"] = {"": torch.device(device)}  # bitsandbytes quantizes where the weights land
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code, **pretrained)
    except (OSError, ValueError) as exc:
        raise _hub_error(name, exc, option) from None
    model.name_or_path = loadable_name(name, path)
    return model if "device_map" in pretrained else model.to(device)


def loadable_name(name: str, path: str) -> str:
    """What a saved adapter records as its base (peft reads `model.name_or_path`): the absolute path of a
    local directory or the shipped model, so it loads from any working directory, else the hub id."""
    from posttrain.embedded import SHIPPED

    return str(Path(path).resolve()) if name in SHIPPED or Path(name).expanduser().is_dir() else name


# ------------------------------------------------------------------------------------- adapters


def adapter_base(path: str) -> str | None:
    """The base model an adapter-only directory (adapter_config.json, no config.json) names, else None."""
    import json

    directory = Path(path)
    if not (directory / ADAPTER_CONFIG).is_file() or (directory / "config.json").is_file():
        return None
    base = json.loads((directory / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise UserError(f"{directory / ADAPTER_CONFIG} names no base_model_name_or_path; add the base model's directory or hub id there")
    return base


def with_adapter(path: str, load_base, option: str, keep_adapter: bool):
    """`load_base(base name, option)` with the adapter at `path` applied: merged (a plain model, what every
    stage but a LoRA training sees) or, with `keep_adapter`, a trainable peft model whose adapter training
    continues (marked `continues_adapter`, so its reference is base + this adapter, see models.reference)."""
    from peft import PeftModel

    model = load_base(adapter_base(path), f"{option} (the base_model_name_or_path of its adapter)")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
            model = PeftModel.from_pretrained(model, path, is_trainable=keep_adapter)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"the adapter in {path} does not fit its base model ({str(exc).splitlines()[0][:200]}); "
                        f"check base_model_name_or_path in {ADAPTER_CONFIG}") from None
    if not keep_adapter:
        return model.merge_and_unload().requires_grad_(True)  # as plain from_pretrained gives it (peft froze the base)
    model.continues_adapter = True
    return model


def continues_adapter(model) -> bool:
    return getattr(model, "continues_adapter", False)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={device} but no CUDA GPU is visible; use device=cpu or device=auto")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"device={device} is not a device torch knows; use device=auto, cpu, cuda or cuda:N") from None


def apply_lora(model, r: int, alpha: int, dropout: float, target_modules: list[str], task_type: str | None = None):
    """Wrap `model` with LoRA adapters; only the adapters are trainable. `task_type` None picks
    SEQ_CLS for a *ForSequenceClassification model and TOKEN_CLS for a *ForTokenClassification one
    (peft then trains its `score` head in full, modules_to_save, so the head gets no adapter), and
    CAUSAL_LM otherwise."""
    from peft import LoraConfig, get_peft_model

    if task_type is None:
        name = type(model).__name__
        task_type = ("SEQ_CLS" if name.endswith("ForSequenceClassification")
                     else "TOKEN_CLS" if name.endswith("ForTokenClassification") else "CAUSAL_LM")
    targets = "all-linear" if target_modules in (["all-linear"], "all-linear") else list(target_modules)
    head = {"exclude_modules": ["score", "classifier"]} if task_type == "TOKEN_CLS" else {}
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type=task_type, **head)
    try:
        with warnings.catch_warnings():
            # peft reads transformers' deprecated `is_gradient_checkpointing`; nothing a user (or we) can change
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
            return get_peft_model(model, config)
    except ValueError as exc:
        raise UserError(f"LoRA could not be applied ({str(exc).splitlines()[0]}); check lora_target_modules") from None


def is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def save_model(model, tokenizer, out_dir: str | Path, merge_lora: bool = True) -> None:
    """save_pretrained output that plain transformers loads (LoRA merged into the base by default)."""
    out_dir = Path(out_dir)
    if is_peft(model) and merge_lora:
        model = _merged(model)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def _merged(model):
    """A merged copy, so the live model keeps its adapters (training may go on after a save). A quantized
    base (QLoRA) is not merged into: that would round the adapter into 4/8 bits; the adapter is merged into
    the base loaded again in full precision instead, as the QLoRA recipe does."""
    import copy
    import tempfile

    from posttrain.models.hardware import is_quantized

    if not is_quantized(model):
        return copy.deepcopy(model).merge_and_unload()
    dtype = next((name for name in WEIGHT_DTYPES if DTYPES[name] == model.get_base_model().config.dtype), "float32")
    with tempfile.TemporaryDirectory() as adapter:
        model.save_pretrained(adapter)
        return load_causal_lm(adapter, dtype)
