"""Config options shared by stages: the model, the training loop, sampling and rewards.

Each stage's config is a flat dataclass that inherits these groups, so every key sits at the top
level of the YAML file and of `key=value` overrides (as in TRL), and `posttrain <stage> --help` lists
them all. A stage that needs another default or a note of its own in the help restates the field
with `restate(Group, "key", ...)`, which keeps everything it does not change.

Sampling groups nest, so a stage gets exactly the keys it reads: SamplingOptions (temperature,
max_new_tokens) < TopPSamplingOptions (+ top_p) < TopKSamplingOptions (+ top_k).
RewardOptions (reward_funcs, reward_weights, reward_workers) < MaskableRewardOptions (+ reward_errors).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from dataclasses import dataclass

from posttrain.config import option
from posttrain.errors import ConfigError
from posttrain.hub import check_push_options

SAMPLING_KEYS = ("max_new_tokens", "temperature", "top_p", "top_k", "stop")  # generation.SamplingParams fields

# issue 18: experiment tracking. report_to's trackers -> the package each imports (also its pip extra's name).
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}


def tracker_installed(name: str) -> bool:
    """Whether `name`'s package can be imported, without importing it (mlflow alone takes seconds)."""
    package = TRACKER_PACKAGES[name]
    if package in sys.modules:
        return sys.modules[package] is not None  # None: an import made to fail
    return importlib.util.find_spec(package) is not None


def resolve_report_to(names: list[str]) -> list[str]:
    """report_to as the trackers to start: none -> [], all -> every installed one; a named tracker whose
    package is missing is a ConfigError that says what to install."""
    if "all" in names:
        return [name for name in TRACKER_PACKAGES if tracker_installed(name)]
    chosen = list(dict.fromkeys(name for name in names if name != "none"))
    for name in chosen:
        if not tracker_installed(name):
            package = TRACKER_PACKAGES[name]
            raise ConfigError(f"report_to={name} needs the {package} package: pip install 'posttrain[{package}]' (or leave {name} out of report_to)")
    return chosen


def restate(group, name: str, help: str | None = None, default=dataclasses.MISSING):
    """Option `name` of `group` declared again in a stage's config, with that stage's help text and/or
    default; the choices (and whatever is not given) stay the group's."""
    field = group.__dataclass_fields__[name]
    if default is dataclasses.MISSING:
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    return option(default, help if help is not None else field.metadata["help"], field.metadata.get("choices"))


@dataclass
class ModelOptions:
    model: str = option("embedded", "Causal LM to start from: 'embedded' (the tiny model shipped in the package), a local directory, or a hub id.")
    dtype: str | None = option(None, "Weights dtype (auto: the checkpoint's own; unset: bfloat16 on a CUDA GPU that supports it, float32 on CPU).", choices=("float32", "bfloat16", "float16", "auto"))
    chat_template: str | None = option(None, "Path to a Jinja chat template that replaces the tokenizer's (a default ChatML-style one is used when the tokenizer has none).")
    trust_remote_code: bool = option(False, "Allow model code from the hub (only for models you trust).")
    device: str = option("auto", "Device: auto (cuda if available, else cpu), cpu, cuda, cuda:N.")
    seed: int = option(0, "Random seed (data order, init, sampling).")
    # issue 18: models (attention kernels, Liger)
    attn_implementation: str | None = option(None, "Attention kernel passed to from_pretrained (unset: transformers' default, sdpa); flash_attention_2/3 need a CUDA GPU and the flash-attn package.", choices=("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention"))
    use_liger_kernel: bool = option(False, "Patch Liger's Triton kernels (RMSNorm, RoPE, SwiGLU, ...) into the model; needs a CUDA GPU and pip install 'posttrain[liger]'.")


@dataclass
class LoraOptions(ModelOptions):
    lora: bool = option(False, "Train LoRA adapters (peft) instead of all weights.")
    lora_r: int = option(16, "LoRA rank.")
    lora_alpha: int = option(32, "LoRA scaling alpha.")
    lora_dropout: float = option(0.0, "LoRA dropout.")
    lora_target_modules: list[str] = option(["all-linear"], "Modules that get LoRA adapters, e.g. [q_proj, v_proj]; 'all-linear' targets every linear layer but the output head.")
    merge_lora: bool = option(True, "On save, merge LoRA weights into the base so final/ is a plain transformers model.")
    # issue 18: models (QLoRA: bitsandbytes quantization, TRL's ModelConfig names)
    load_in_4bit: bool = option(False, "Load the base weights in 4 bits (bitsandbytes) and train LoRA adapters on them: QLoRA (needs lora=true).")
    load_in_8bit: bool = option(False, "Load the base weights in 8 bits (bitsandbytes, LLM.int8) and train LoRA adapters on them (needs lora=true).")
    bnb_4bit_quant_type: str = option("nf4", "4-bit data type of load_in_4bit.", choices=("nf4", "fp4"))
    bnb_4bit_compute_dtype: str | None = option(None, "dtype the 4-bit layers compute in (unset: the weights dtype).", choices=("float32", "bfloat16", "float16"))
    use_bnb_nested_quant: bool = option(False, "Quantize the 4-bit quantization constants too (QLoRA's double quantization; bnb_4bit_use_double_quant).")


def output_dir_option(stage: str, holds: str = "config.yaml, metrics.jsonl, checkpoints/step-N/, final/"):
    """`output_dir` defaulting to runs/STAGE, so two stages' defaults never share a directory."""
    return option(f"runs/{stage}", f"Run directory: {holds}.")


@dataclass
class TrainOptions(LoraOptions):
    output_dir: str = output_dir_option("STAGE")  # every stage's config restates it with its own name
    dataset: str | list[str] = option("task:arithmetic", "Training data: a .jsonl/.json/.parquet/.csv file, a save_to_disk directory, a local dataset folder, a hub name, a builder (json, csv, parquet, text) with data_files, task:NAME[:split], or a mixture [SOURCE:WEIGHT, ...] of those sampled with the seed (weights sum to 1).")
    dataset_split: str | None = option(None, "Split to read from a DatasetDict directory, dataset folder or hub dataset, sliced as datasets slices: train[:1000], test[10%:] (default: train).")
    # issue 18: datasets
    dataset_config: str | None = option(None, "Configuration of a hub dataset or a local dataset folder (openai/gsm8k: main).")
    data_files: str | list[str] | dict | None = option(None, "Files the dataset builder reads: a path, a glob, a list or {train: ..., test: ...}; dataset= is then json, csv, parquet, text or a folder.")
    dataset_columns: dict | None = option(None, "Rename columns after reading, e.g. {question: prompt, answer: completion}; applies to dataset and eval_dataset.")
    eval_dataset: str | None = option(None, "Held-out data in the same forms (default for task:NAME is task:NAME:test; none otherwise).")
    max_length: int = option(512, "Longest tokenized example, in tokens.")
    truncation: bool = option(False, "Cut examples longer than max_length (keep the start) instead of raising an error.")
    learning_rate: float = option(2e-5, "Peak learning rate (AdamW).")
    lr_scheduler: str = option("cosine", "Decay after warm-up.", choices=("cosine", "linear", "constant"))
    warmup_ratio: float = option(0.0, "Fraction of the steps spent warming up linearly from 0 (ignored if warmup_steps > 0).")
    warmup_steps: int = option(0, "Warm-up steps.")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    adam_beta1: float = option(0.9, "AdamW beta1.")
    adam_beta2: float = option(0.999, "AdamW beta2.")
    adam_epsilon: float = option(1e-8, "AdamW epsilon.")
    max_grad_norm: float = option(1.0, "Clip the global gradient norm to this (0 disables clipping).")
    max_nonfinite_steps: int = option(3, "A step whose loss or gradient is NaN/inf is skipped (no update) and counted (nonfinite_steps); this many in a row stop the run (exit 2). 0: never stop.")
    batch_size: int = option(8, "Examples (or packed rows) per optimizer micro-batch on each process.")
    gradient_accumulation_steps: int = option(1, "Micro-batches per optimizer step; the result equals one batch that many times larger.")
    num_epochs: float = option(1.0, "Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = option(0, "Optimizer steps to run (0: derive from num_epochs).")
    logging_steps: int = option(10, "Log metrics every N optimizer steps.")
    eval_steps: int = option(0, "Evaluate on eval_dataset every N steps (0: only at the end).")
    eval_on_start: bool = option(False, "Also evaluate once before the first step, logged at step 0 (TRL's eval_on_start): where every eval_ curve starts.")
    save_steps: int = option(0, "Write checkpoints/step-N/ every N steps (0: none until the end).")
    keep_last: int = option(2, "Keep only the newest N checkpoints (0 keeps all).")
    resume: bool = option(False, "Continue from the newest checkpoint in output_dir; ends exactly where an uninterrupted run would.")
    # issue 18: models (resume from any checkpoint)
    resume_from: str | None = option(None, "Continue from this checkpoint directory (RUN/checkpoints/step-N, of this run or another with the same settings); output_dir's metrics.jsonl keeps that run's lines up to step N.")
    mixed_precision: str = option("no", "Autocast dtype for forward/backward (weights stay in their dtype).", choices=("no", "bf16", "fp16"))
    gradient_checkpointing: bool = option(False, "Recompute activations in backward to save memory.")
    overwrite_output_dir: bool = option(False, "Allow writing into an output_dir that already holds a finished run.")
    # issue 18: experiment tracking (train/trackers.py)
    report_to: list[str] = option(["none"], "Experiment trackers that get the metrics, the resolved config and sample completions, besides metrics.jsonl: none, or any of tensorboard, wandb, mlflow, trackio; all: every installed one. Their files go in output_dir unless TENSORBOARD_LOGDIR / WANDB_DIR / MLFLOW_TRACKING_URI / TRACKIO_DIR say otherwise.", choices=("none", "all", *TRACKER_PACKAGES))
    run_name: str | None = option(None, "The run's name in the trackers (default: output_dir's last part).")
    tracker_project: str | None = option(None, "Project (wandb, trackio) or experiment (mlflow) that holds the run (default: $WANDB_PROJECT, $MLFLOW_EXPERIMENT_NAME, $TRACKIO_PROJECT, else posttrain).")
    # issue 18: hub
    push_to_hub: bool = option(False, "At the end, upload final/ with its model card (README.md) to the Hugging Face Hub repo hub_model_id (token: HF_TOKEN or `huggingface-cli login`, never the config).")
    hub_model_id: str | None = option(None, "Hub repo to push to, NAMESPACE/NAME or NAME (under your account); created if missing. Required with push_to_hub=true.")
    hub_private_repo: bool | None = option(None, "Create the repo private (true) or public (false); default: the Hub's default. An existing repo keeps its visibility.")

    def validate(self) -> None:
        self.dataset = mixture_text(self.dataset)  # issue 18: datasets
        check_dataset_options(self)
        positive = ("batch_size", "gradient_accumulation_steps", "max_length")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}' must be >= 1, got {getattr(self, key)}")
        for key in ("learning_rate", "warmup_ratio", "max_grad_norm", "weight_decay", "num_epochs"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key '{key}' must be >= 0, got {getattr(self, key)}")
        if self.max_nonfinite_steps < 0:
            raise ConfigError(f"config key 'max_nonfinite_steps' must be >= 0 (0: never stop), got {self.max_nonfinite_steps}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"config key 'warmup_ratio' must be in [0, 1), got {self.warmup_ratio}")
        if self.max_steps <= 0 and self.num_epochs <= 0:
            raise ConfigError("set max_steps > 0 or num_epochs > 0, otherwise there is nothing to train")
        resolve_report_to(self.report_to)  # issue 18: experiment tracking (a missing package is a ConfigError now)
        check_push_options(self.push_to_hub, self.hub_model_id, self.hub_private_repo)  # issue 18: hub


# issue 18: datasets
def mixture_text(value) -> str:
    """A mixture given as a YAML list [a:0.7, b:0.3] or mapping {a: 0.7, b: 0.3}, as the one string
    `dataset` holds ("[a:0.7, b:0.3]", read by tasks/mixtures.py), so every stage reads `dataset` as text."""
    if isinstance(value, dict):
        value = [f"{k}:{v}" for k, v in value.items()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "[" + ", ".join(value) + "]"
    if not isinstance(value, str):
        raise ConfigError(f"config key 'dataset' got {value!r}; expected a source, or a mixture [SOURCE:WEIGHT, ...] "
                          "such as [task:arithmetic:0.7, data.jsonl:0.3]")
    return value


def check_dataset_options(config) -> None:
    """data_files: a string, a list of strings or {split: string or list}; dataset_columns: {old: new} strings."""
    files = config.data_files
    ok = lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))  # noqa: E731
    if files is not None and not (ok(files) or (isinstance(files, dict) and files and all(ok(v) for v in files.values()))):
        raise ConfigError(f"config key 'data_files' got {files!r}; expected a path, a glob, a list of them or "
                          "{train: ..., test: ...}")
    columns = config.dataset_columns
    if columns is not None and not (isinstance(columns, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items())):
        raise ConfigError(f"config key 'dataset_columns' got {columns!r}; expected {{old: new}} column names, e.g. "
                          "{question: prompt, answer: completion}")


@dataclass
class TokenizeOptions:
    """Tokenizing the training data through datasets.Dataset.map (data/mapping.py): parallel and cached."""
    dataset_num_proc: int = option(1, "Processes that tokenize (datasets.Dataset.map); the result is cached under HF_DATASETS_CACHE, keyed by the rows, the tokenizer and the options, and shared by ranks (rank 0 tokenizes).")

    def validate(self) -> None:
        super().validate()
        if self.dataset_num_proc < 1:
            raise ConfigError(f"config key 'dataset_num_proc' must be >= 1, got {self.dataset_num_proc}")


@dataclass
class SamplingOptions:
    temperature: float = option(1.0, "Sampling temperature.")
    max_new_tokens: int = option(128, "Longest sampled completion in tokens.")

    def sampling_kwargs(self, **overrides) -> dict:
        """`generation.SamplingParams` keyword arguments: this config's sampling keys (those it has of
        max_new_tokens, temperature, top_p, top_k, stop), then `overrides` (seed, n, ...)."""
        values = {key: getattr(self, key) for key in SAMPLING_KEYS if hasattr(self, key)}
        if "stop" in values:
            values["stop"] = list(values["stop"])
        return values | overrides


@dataclass
class TopPSamplingOptions(SamplingOptions):
    top_p: float = option(1.0, "Nucleus sampling threshold.")

    def check_sampling(self) -> None:
        """A ConfigError unless temperature >= 0 (0: greedy) and 0 < top_p <= 1."""
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(f"temperature must be >= 0 and top_p in (0, 1], got {self.temperature} and {self.top_p}")


@dataclass
class TopKSamplingOptions(TopPSamplingOptions):
    top_k: int = option(0, "Top-k sampling (0: off).")


ROLLOUT_BACKENDS = ("local", "vllm")
VLLM_MODES = ("colocate", "server")
VLLM_KEYS = ("vllm_mode", "vllm_server_url")


@dataclass
class SamplingBackendOptions:
    """Which engine samples (rollout/, docs/scale.md): posttrain's sampler or vLLM."""
    rollout_backend: str = option("local", "Engine that samples: local (posttrain's sampler) or vllm (bash install.sh vllm).", choices=ROLLOUT_BACKENDS)
    vllm_mode: str = option("colocate", "colocate: a vLLM engine in this process (weights handed over as tensors); server: a running vLLM server at vllm_server_url, weights pushed to it.", choices=VLLM_MODES)
    vllm_server_url: str = option("http://127.0.0.1:8000", "The server of vllm_mode=server (started with --worker-extension-cls posttrain.rollout.vllm_worker.WeightFileLoader and VLLM_SERVER_DEV_MODE=1).")

    def unread(self) -> dict[str, str]:
        out = getattr(super(), "unread", dict)()  # the next group's, where the config's groups chain them
        if self.rollout_backend != "vllm":
            return out | dict.fromkeys(VLLM_KEYS, "with rollout_backend=vllm")
        return out | ({"vllm_server_url": "with vllm_mode=server"} if self.vllm_mode == "colocate" else {})


@dataclass
class GenerationBatchOptions:
    generation_batch_size: int = option(64, "Prompts per generation batch.")


@dataclass
class RewardOptions:
    reward_funcs: list[str] = option(["task"], "Reward functions: task (the dataset's embedded task's scorers, summed), task::SCORER (one of them), task:NAME[:SCORER], a built-in NAME[:key=value...] (math_accuracy, format, soft_overlong, repetition, code_tests, reward_model, judge, pairwise_judge, process_reward_model, milestone, step_reward, cascade), module:function, TRL's module.function, or file.py:function.")
    reward_weights: list[float] | None = option(None, "One weight per reward function (default 1.0 each); the reward is the weighted sum.")
    reward_workers: int = option(4, "Reward functions run concurrently in a pool of at most this many threads (async ones on one event loop).")
    reward_timeout: float = option(300.0, "Seconds each call of a reward or monitor function (judges included) may take; a call past it is abandoned, its samples get no value from that function (None) and it is counted (online stages: reward/<name>/timeouts, and 3 timed-out calls in a row stop the run; sampling stages: a warning and reward_timeouts). 0: no limit.")


@dataclass
class MaskableRewardOptions(RewardOptions):
    reward_errors: str = option("raise", "A reward function that raises or returns NaN/inf: raise (one-line error) or mask (the sample is left out of the loss, counted).", choices=("raise", "mask"))


REF_SYNCS = ("none", "soft", "hard")


@dataclass
class RefSyncOptions:
    """Updating the reference policy during training (models.reference.ReferenceSync): TR-DPO for DPO,
    a periodic (or EMA) reference for GRPO / PPO."""
    ref_sync: str = option("none", "Move the reference policy during training, every ref_sync_steps optimizer steps: soft (θ_ref ← α θ + (1 − α) θ_ref, TR-DPO / an EMA reference), hard (θ_ref ← θ, a periodic refresh), none (frozen).", choices=REF_SYNCS)
    ref_sync_steps: int = option(512, "τ: optimizer steps between reference updates (TRL's ref_model_sync_steps: 512).")
    ref_sync_alpha: float = option(0.6, "α of ref_sync=soft (TRL's ref_model_mixup_alpha: 0.6).")

    def validate(self) -> None:
        super().validate()
        if self.ref_sync_steps < 1 or not 0 < self.ref_sync_alpha <= 1:
            raise ConfigError(f"ref_sync_steps must be >= 1 and ref_sync_alpha in (0, 1], got {self.ref_sync_steps} and {self.ref_sync_alpha}")
        defaults = RefSyncOptions.__dataclass_fields__
        for key, when in (("ref_sync_steps", "with ref_sync=soft or hard"), ("ref_sync_alpha", "with ref_sync=soft")):
            if getattr(self, key) != defaults[key].default and (self.ref_sync == "none" or (key == "ref_sync_alpha" and self.ref_sync == "hard")):
                raise ConfigError(f"config key '{key}' is set ({getattr(self, key)!r}) but this run never reads it: it applies only {when}; "
                                  "remove it or change that setting")
        if self.ref_sync != "none" and getattr(self, "lora", False):
            raise ConfigError(f"ref_sync={self.ref_sync} needs a reference model of its own to update, but under lora=true the reference "
                              "is the adapter-disabled base (no copy is kept); use ref_sync=none, or train without LoRA")

    def check_ref_sync(self, problem: str | None) -> None:
        """A ConfigError when ref_sync is on but this run has no reference to update (`problem` says why)."""
        if self.ref_sync != "none" and problem:
            raise ConfigError(f"ref_sync={self.ref_sync} updates the reference policy, but {problem}; use ref_sync=none or give the run a reference")
