"""TRL's config keys, read as the posttrain options they correspond to.

A TRL script's YAML file (the fields of GRPOConfig / DPOConfig / SFTConfig / ..., ModelConfig and
ScriptArguments), its `--key value` flags and the Python API's keyword arguments work where posttrain
has the same option under another name: `model_name_or_path: Qwen/Qwen2.5-0.5B` is `model: ...`.
Keys spelt the same in both (learning_rate, beta, num_generations, seed, output_dir, logging_steps,
lora_r, ...) need no entry here.

`resolve(values, cls)` rewrites one source of values (a YAML file, the command line, keyword
arguments) before the sources are merged, so a later source may override an alias with our name.
Per key, in this order:

- a key that is an option of `cls` is ours (TRL-only values of a shared key are translated:
  GRPO's `loss_type: dapo` is our token_mean);
- ALIASES: the TRL key sets one of our options (its value translated); the stage must have that
  option, and giving both names in one source is an error;
- UNSUPPORTED: no equivalent; one line saying why and what to set instead (accepted silently when
  the value is TRL's "off", e.g. `use_vllm: false`);
- IGNORED: keys that only tune TRL's own machinery (dataloader workers, logging directories):
  accepted with a warning;
- anything else is left for build_config, which names the valid keys.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any, Callable

from posttrain.errors import ConfigError

DROP = object()  # a converted value that sets nothing (`bf16: false`)


def _flag(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ConfigError(f"TRL key '{key}' got {value!r}; expected true or false")


def _when_true(key: str, ours: Any) -> Callable[[Any], Any]:
    return lambda value: ours if _flag(key, value) else DROP


def _scheduler(value: Any) -> Any:
    """transformers' SchedulerType names: ours warm up in every schedule, so *_with_warmup is the plain one."""
    return {"constant_with_warmup": "constant"}.get(value, value)


def _resume(value: Any) -> Any:
    if isinstance(value, str) and value.lower() not in ("true", "false"):
        raise ConfigError(f"TRL key 'resume_from_checkpoint' names a checkpoint ({value}); in posttrain that is "
                          f"resume_from={value} (resume=true continues from output_dir's newest)")
    return True if _flag("resume_from_checkpoint", value) else DROP


LEGACY = "an older TRL's name"


@dataclass(frozen=True)
class Alias:
    option: str  # the posttrain option this TRL key sets
    convert: Callable[[Any], Any] | None = None  # TRL value -> ours (DROP: sets nothing)
    also: tuple[str, ...] = ()  # options set to the same value unless given in the same source
    note: str = ""  # for the docs' table


ALIASES: dict[str, Alias] = {
    # ScriptArguments / ModelConfig
    "model_name_or_path": Alias("model"),
    "dataset_name": Alias("dataset"),
    "dataset_streaming": Alias("streaming"),
    "dataset_train_split": Alias("dataset_split"),
    "torch_dtype": Alias("dtype", note=LEGACY),  # transformers < 4.56 spelling of dtype
    "use_peft": Alias("lora", _when_true("use_peft", True)),
    "chat_template_path": Alias("chat_template"),
    # TrainingArguments
    "per_device_train_batch_size": Alias("batch_size", note="online stages: completions per micro-batch, as in TRL"),
    "num_train_epochs": Alias("num_epochs"),
    "activation_checkpointing": Alias("gradient_checkpointing", note="transformers 5's name for gradient_checkpointing"),
    "lr_scheduler_type": Alias("lr_scheduler", _scheduler, note="cosine, linear, constant (constant_with_warmup = constant)"),
    "bf16": Alias("mixed_precision", _when_true("bf16", "bf16")),
    "fp16": Alias("mixed_precision", _when_true("fp16", "fp16")),
    "save_total_limit": Alias("keep_last", lambda v: 0 if v is None else v),
    "resume_from_checkpoint": Alias("resume", _resume, note="true only: the newest checkpoint of output_dir"),
    # GRPOConfig / RLOOConfig
    "max_completion_length": Alias("max_new_tokens"),
    "mask_truncated_completions": Alias("mask_truncated"),
    "importance_sampling_level": Alias("ratio_level"),
    "epsilon": Alias("epsilon_low", also=("epsilon_high",), note="also epsilon_high unless that is given, as in TRL"),
    "sync_ref_model": Alias("ref_sync", _when_true("sync_ref_model", "soft")),
    "ref_model_sync_steps": Alias("ref_sync_steps"),
    "ref_model_mixup_alpha": Alias("ref_sync_alpha"),
    # DPOConfig / KTOConfig
    "precompute_ref_log_probs": Alias("ref_model", _when_true("precompute_ref_log_probs", "precompute")),
    "precompute_ref_batch_size": Alias("precompute_batch_size"),
    # GKDConfig / DistillationConfig (trl.experimental)
    "teacher_model_name_or_path": Alias("teacher"),
    # PPOConfig of TRL < 1.0 (removed since): its scripts' configs still run
    "sft_model_path": Alias("model", note=LEGACY),
    "reward_model_path": Alias("reward_model", note=LEGACY),
    "response_length": Alias("max_new_tokens", note=LEGACY),
    "num_ppo_epochs": Alias("num_iterations", note=LEGACY),
    "num_mini_batches": Alias("num_minibatches", note=LEGACY),
}

# Same key, TRL-only values: (key, TRL value) -> ours, used when the stage's option allows ours.
VALUES: dict[tuple[str, Any], Any] = {
    ("loss_type", "dapo"): "token_mean",  # GRPO: one mean over all tokens of the batch
    ("loss_type", "bnpo"): "token_mean",
    ("scale_rewards", True): "group",  # TRL < 0.22 took a bool
    ("scale_rewards", False): "none",
}

_PROMPTS = "a round samples prompts_per_step prompts x num_generations completions; set prompts_per_step"
UNSUPPORTED: dict[str, str] = {
    "max_prompt_length": "posttrain keeps prompts whole and skips (counts) those that leave no room: prompt + completion must fit max_length",
    "generation_batch_size": _PROMPTS,
    "steps_per_generation": "a round's samples are trained in num_iterations x num_minibatches optimizer steps; set num_minibatches",
    "dataset_test_split": "give the held-out data as eval_dataset (a file, a save_to_disk directory or a hub name)",
    "use_vllm": "vLLM rollouts are not wired into the CLI stages; posttrain samples with its own sampler",
    "use_dora": "DoRA is not supported; use lora=true",
    "use_rslora": "rsLoRA is not supported; use lora=true (scale with lora_alpha)",
    "lora_modules_to_save": "only LoRA adapters train under lora=true; train without LoRA to update whole modules",
    "model_revision": "a hub revision is not selectable; download that revision to a directory and pass it as model",
    "min_p": "min-p sampling is not supported; use top_p / top_k",
    "repetition_penalty": "a repetition penalty in sampling would change the policy's log-probs; use the repetition reward instead",
    "deepspeed": "posttrain distributes with torch.distributed FSDP2 under torchrun, not DeepSpeed",
    "fsdp": "posttrain shards with FSDP2 by itself under torchrun --nproc-per-node N",
    "torch_compile": "not supported",
}
OFF_VALUES = (False, None, "", "main", [], 0)  # an unsupported key at TRL's "off" value asks for nothing

IGNORED: dict[str, str] = {
    "do_train": "posttrain stages always train",
    "per_device_eval_batch_size": "evaluation batches are sized by the stage",
    "do_eval": "evaluation runs when eval_dataset is set (every eval_steps)",
    "eval_strategy": "evaluation is every eval_steps (0: at the end)",
    "logging_strategy": "logging is every logging_steps",
    "save_strategy": "checkpoints are every save_steps (0: at the end)",
    "logging_dir": "metrics go to output_dir/metrics.jsonl",
    "logging_first_step": "the first step is always logged",
    "log_level": "posttrain prints its own progress",
    "disable_tqdm": "the progress bar shows only on a terminal",
    "remove_unused_columns": "every dataset column reaches the reward functions",
    "dataloader_num_workers": "data is tokenized once, in the main process",
    "dataloader_pin_memory": "batches are moved by the training loop",
    "dataset_num_proc": "this stage tokenizes in one process (sft, dpo and rm take dataset_num_proc)",
    "ddp_find_unused_parameters": "posttrain wraps the model with FSDP2, not DDP",
    "log_completions": "posttrain logs reward and completion metrics every logging step",
    "num_completions_to_print": "posttrain prints no completion tables during training",
    "shuffle_dataset": "training data is always shuffled with seed",
    "save_only_model": "checkpoints hold everything a resume needs; final/ holds only the model",
    "ignore_bias_buffers": "not needed: posttrain does not wrap the model with DDP",
}


def trl_names(option: str) -> list[str]:
    """The TRL keys that set `option` (for --help)."""
    return [key for key, alias in ALIASES.items() if alias.option == option]


def _same_name(key: str, value: Any, field) -> Any:
    translated = VALUES.get((key, value)) if isinstance(value, (str, bool)) else None
    if translated is None:
        return value
    choices = field.metadata.get("choices")
    return translated if choices is None or translated in choices or value not in choices else value


def resolve(values: dict[str, Any], cls) -> dict[str, Any]:
    """`values` (one source: a file, the command line, keyword arguments) with TRL's keys rewritten to
    `cls`'s options; a ConfigError for an alias the stage has no option for, one given alongside our
    name, or a TRL key posttrain has no equivalent for."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    set_by: dict[str, str] = {}  # our option -> the TRL key that set it
    for key, value in values.items():
        if key in fields:
            out[key] = _same_name(key, value, fields[key])
        elif key in ALIASES:
            alias = ALIASES[key]
            converted = alias.convert(value) if alias.convert else value
            if converted is DROP:
                continue
            for option in (alias.option,) + tuple(o for o in alias.also if o not in values):
                if option not in fields:
                    raise ConfigError(f"TRL key '{key}' sets posttrain's '{option}', which {cls.__name__} has no option for; "
                                      f"remove it (see `posttrain <stage> --help`)")
                if option in values or option in set_by:
                    other = option if option in values else set_by[option]
                    raise ConfigError(f"config keys '{key}' (TRL's name) and '{other}' both set '{option}'; keep one")
                out[option], set_by[option] = converted, key
        elif key in UNSUPPORTED:
            if value not in OFF_VALUES:
                raise ConfigError(f"TRL key '{key}' has no posttrain equivalent: {UNSUPPORTED[key]}")
        elif key in IGNORED:
            print(f"posttrain: TRL key '{key}' ignored: {IGNORED[key]}", file=sys.stderr, flush=True)
        else:
            out[key] = value  # ours (build_config checks it) or unknown (build_config names the valid keys)
    return out
