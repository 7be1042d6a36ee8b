"""What every stage's `run_*` does before its own work, once: check the run directory, load the
tokenizer and the models its config names, read the prompt rows of a sampling stage.

A config here is any stage config with the ModelOptions keys (model, dtype, chat_template,
trust_remote_code, device); the run directory comes from `output_dir` (train/rundir.py).
"""

from __future__ import annotations

from posttrain.errors import ConfigError
from posttrain.train.rundir import RunDir, check_run_dir

REWARD_COLUMNS = " (plus any columns the rewards read)"


def load_tokenizer_for(config, model: str | None = None, option: str = "model"):
    """The tokenizer of `model` (default: config.model) with the config's chat template; errors name
    `option`, the config key that gave `model`."""
    from posttrain.models.loading import load_tokenizer

    return load_tokenizer(model or config.model, config.chat_template, config.trust_remote_code, option=option)


def load_model_for(config, model: str | None = None, device=None, option: str = "model", hint: str | None = None):
    """The causal LM `model` (default: config.model) in the config's dtype, on `device` (default: the
    config's; a trainer's `build_model` passes "cpu", the loop places it); errors name `option` and
    say `hint` (as `resolve_model_path`). The config's hardware knobs (attn_implementation, load_in_4bit/8bit,
    use_liger_kernel) are checked against the config's device before any weights load. The model a LoRA
    run starts from may be an adapter directory: its adapter then keeps training."""
    from posttrain.models import hardware
    from posttrain.models.loading import load_causal_lm, resolve_device

    target = resolve_device(config.device)
    attn = getattr(config, "attn_implementation", None)
    hardware.check_attn_implementation(attn, target)
    if getattr(config, "use_liger_kernel", False):
        hardware.check_liger(target)
    hardware.check_quantization(config)
    dtype = dtype_for(config)
    policy = model is None  # the trained model: only it is quantized, only its adapter keeps training
    quantization = hardware.quantization_config(config, dtype) if policy else None
    device = target if device is None or quantization is not None else device  # quantized weights load where they run
    lm = load_causal_lm(model or config.model, dtype, device, config.trust_remote_code, option=option, hint=hint,
                        keep_adapter=policy and getattr(config, "lora", False),
                        attn_implementation=attn, quantization_config=quantization)
    if getattr(config, "use_liger_kernel", False):
        hardware.apply_liger(lm)
    if policy and getattr(lm, "continues_adapter", False):
        check_continued_adapter(lm.peft_config["default"], config)
    return lm


def check_continued_adapter(adapter, config) -> None:
    """A LoRA run from an adapter directory trains that adapter as it is: a lora_* key set to another
    shape than the adapter's is an error, not silently ignored."""
    from posttrain.options import LoraOptions

    defaults = LoraOptions.__dataclass_fields__
    fix = "remove it, or start a new adapter on a merged model (a lora=false run, or merge_lora=true)"
    for key, theirs in (("lora_r", adapter.r), ("lora_alpha", adapter.lora_alpha), ("lora_dropout", adapter.lora_dropout)):
        ours = getattr(config, key)
        if ours != defaults[key].default and ours != theirs:
            raise ConfigError(f"{key}={ours} but model={config.model} is an adapter with {key.removeprefix('lora_')}={theirs}, "
                              f"which this LoRA run keeps training; {fix}")
    if config.lora_target_modules != defaults["lora_target_modules"].default_factory():
        raise ConfigError(f"lora_target_modules is set but model={config.model} is an adapter whose own target modules this LoRA "
                          f"run keeps training; {fix}")


def check_own_loader(config, where: str) -> None:
    """For a stage whose model loads another way than load_model_for (`where` says how): attn_implementation
    is checked as there; use_liger_kernel, load_in_4bit and load_in_8bit are refused, never silently ignored."""
    from posttrain.models.hardware import check_attn_implementation
    from posttrain.models.loading import resolve_device

    check_attn_implementation(config.attn_implementation, resolve_device(config.device))
    chosen = [key for key in ("use_liger_kernel", "load_in_4bit", "load_in_8bit") if getattr(config, key, None)]
    if chosen:
        raise ConfigError(f"{', '.join(chosen)} {'is' if len(chosen) == 1 else 'are'} not supported {where}; remove "
                          f"{'it' if len(chosen) == 1 else 'them'}")


def dtype_for(config) -> str:
    """The weights dtype the config means on its device (dtype unset: bfloat16 on a CUDA GPU that supports it, else float32)."""
    from posttrain.models.hardware import weights_dtype
    from posttrain.models.loading import resolve_device

    return weights_dtype(config.dtype, resolve_device(config.device))


def start_run(config) -> tuple[RunDir, object]:
    """(the checked run directory, the tokenizer): a clash with an earlier run is reported before any
    work, then the tokenizer every stage needs is loaded."""
    run = check_run_dir(config)
    return run, load_tokenizer_for(config)


def load_prompt_rows(source: str, split: str | None, needs: str, hint: str = REWARD_COLUMNS, options=None) -> list[dict]:
    """The rows of `source` (split `split`), which a sampling stage reads by their 'prompt' column;
    a ConfigError "SOURCE: {needs} rows with a 'prompt' column{hint}" when there are none, and a
    DataError naming the row when a later row has no prompt or one that is not text or messages.
    `options`: the stage config, whose dataset options say how to read (tasks.sources.load_rows)."""
    from posttrain.data.values import check_text
    from posttrain.errors import data_error
    from posttrain.tasks.sources import load_rows

    rows = load_rows(source, split, options=options)
    if not rows or not isinstance(rows[0], dict) or "prompt" not in rows[0]:
        raise ConfigError(f"{source}: {needs} rows with a 'prompt' column{hint}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "prompt" not in row:
            raise data_error(source, i, "prompt", f"missing; {needs} a 'prompt' in every row")
        check_text(row["prompt"], source, i, "prompt", allow_empty=True)
    return rows


def sampler_for(config, model, tokenizer, model_name: str | None = None):
    """What a sampling stage samples with: `model` itself (posttrain's sampler), or, with
    rollout_backend=vllm, a vLLM backend holding its weights (`model_name`: the checkpoint it starts from,
    default config.model). Switch it to another policy with `sampler_on`."""
    if getattr(config, "rollout_backend", "local") == "local":
        return model
    from posttrain.rollout import make_backend

    return make_backend("vllm", model, tokenizer, model_path=model_name or config.model, mode=config.vllm_mode,
                        url=config.vllm_server_url, seed=config.seed, max_model_len=getattr(config, "max_length", 2048))


def sampler_on(sampler, model):
    """`sampler` made to sample from `model`: a backend takes its weights (one engine serves every policy
    of a run), a model is simply replaced."""
    if not hasattr(sampler, "sync_weights"):
        return model
    sampler.policy = model
    sampler.sync_weights()
    return sampler
