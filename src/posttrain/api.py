"""The Python API: every CLI stage is a function whose keyword arguments are the stage's options.

    import posttrain
    metrics = posttrain.sft(model="embedded", dataset="task:arithmetic", max_steps=10, output_dir="runs/sft")
    posttrain.dpo(preset="simpo", model="runs/sft/final", dataset="pairs.jsonl", output_dir="runs/simpo")
    posttrain.grpo(reward_funcs=[my_reward, "format"], model="runs/sft/final", output_dir="runs/grpo")

Options are checked exactly as on the command line (`build_config`): an unknown key or a wrong type
is a one-line ConfigError listing the valid keys. Values merge as on the command line too:
defaults < `preset=` < `config=` YAML file < keyword arguments.

A Python callable may stand wherever a stage takes a function spec (reward_funcs, scorer, ...). It
becomes a spec string: `module:function` when the function is importable by that path (so the run's
config.yaml reproduces the run from the CLI too), else a name in an in-process module, which works
in this Python process only (not under torchrun or in a fresh process that resumes the run).

Stage functions are named after their stage, except where a `posttrain` submodule already has the
name: `eval` is `evaluate` (posttrain.eval is a package) and `quickstart` is `run_quickstart`.
Objects stand where a stage reads data or a model (docs/python_api.md):
- data options (`dataset`, `eval_dataset`, `ptx_dataset`, `samples`) take a `datasets.Dataset`, a
  `DatasetDict` (split picked by dataset_split) or a list of dicts. A training stage in one process writes
  them to output_dir/data/OPTION.jsonl (a DatasetDict to a save_to_disk directory there) once the config
  is checked, and config.yaml points at that copy, so the run resumes from the CLI too. Elsewhere (other
  stages, under torchrun, rows JSON cannot hold) the object is kept in this process as
  "python:dataset/NAME". An `IterableDataset` is refused: materialize the rows you want first.
- model options take a model object (PreTrainedModel, PeftModel), trained in place as TRL does, with
  `tokenizer=` (or `processing_class=`) its tokenizer object; config.yaml records "python:model/NAME".
- `callbacks=[...]` are transformers TrainerCallbacks called by the training loop (train/callbacks.py).
Anything else that is not a plain value is a ConfigError naming the option and the types it takes.

This module imports neither torch nor transformers; each stage's module is imported when it runs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Callable

from posttrain.callables import is_object_spec, python_object, register_object
from posttrain.errors import ConfigError, UserError
from posttrain.stages import STAGES, get_stage, preset_values, stage_of_config

__all__ = ["config_for", "run", "generate", "run_pipeline", "function_spec", "stage_help", "ConfigError", "UserError"]

# Python callables given to the API that are not importable by module path live here, by name, so
# RewardFunctions.resolve / load_callable find them as "posttrain_python_callables:NAME".
CALLABLES_MODULE = "posttrain_python_callables"
_callables = sys.modules.setdefault(CALLABLES_MODULE, types.ModuleType(
    CALLABLES_MODULE, "Python functions passed to posttrain's API, by name (in-process only)."))


def function_name(stage: str) -> str:
    """The API function for a stage: the stage name, unless a posttrain submodule already has it."""
    if stage == "eval":
        return "evaluate"
    return f"run_{stage}" if importlib.util.find_spec(f"posttrain.{stage}") is not None else stage


def function_spec(fn: Callable | str) -> str:
    """The spec string that names `fn` for a stage option (a string is returned as it is)."""
    if isinstance(fn, str):
        return fn
    if not callable(fn):
        raise ConfigError(f"expected a function or a spec string, got {fn!r}")
    from posttrain.rewards.registry import BUILTIN

    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    importable = (module not in (None, "__main__", "task", *BUILTIN) and qualname.isidentifier()
                  and getattr(sys.modules.get(module), qualname, None) is fn)
    if importable:
        return f"{module}:{qualname}"
    base = re.sub(r"\W+", "_", getattr(fn, "__name__", None) or type(fn).__name__).strip("_") or "function"
    name, k = base, 1
    while getattr(_callables, name, fn) is not fn:  # another function already holds this name
        k += 1
        name = f"{base}_{k}"
    setattr(_callables, name, fn)
    return f"{CALLABLES_MODULE}:{name}"


# ----------------------------------------------------------------------------------- objects as options

PLAIN = (str, Path, int, float, bool, dict, type(None))
DATA_TYPES = "a file/directory/hub name/task:NAME string, a datasets.Dataset or DatasetDict, or a list of dicts"


def is_data_option(key: str) -> bool:
    return key in ("dataset", "samples") or key.endswith("_dataset")


def _is_model(value) -> bool:
    torch = sys.modules.get("torch")  # no torch imported: the value cannot be a model
    return torch is not None and isinstance(value, torch.nn.Module)


def _is_tokenizer(value) -> bool:
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(value, (transformers.PreTrainedTokenizerBase, transformers.ProcessorMixin))


def _data_spec(key: str, value) -> str | None:
    """The spec of a data object for option `key`; None when `value` is no data object."""
    datasets = sys.modules.get("datasets")
    if datasets is not None and isinstance(value, (datasets.IterableDataset, datasets.IterableDatasetDict)):
        raise ConfigError(f"{key}: an IterableDataset may never end, and posttrain reads a finite set of rows; pass "
                          f"list(ds.take(N)) or a Dataset, or the hub name (with streaming where the stage reads it)")
    is_data = (datasets is not None and isinstance(value, (datasets.Dataset, datasets.DatasetDict))) or (
        isinstance(value, list) and value and all(isinstance(row, dict) for row in value))
    if not is_data:
        return None
    if not is_data_option(key):
        raise ConfigError(f"{key} got a data set ({type(value).__name__}); data objects go to dataset, eval_dataset, "
                          "ptx_dataset or samples")
    return register_object("dataset", value)


def _option_value(key: str, value, tokenizer) -> Any:
    """An API value as a config value: objects become spec strings; an object of a type no option takes
    is a ConfigError naming the option, the type and what it takes (never its str())."""
    if isinstance(value, Path):
        return str(value)
    spec = _data_spec(key, value)
    if spec is not None:
        return spec
    if _is_tokenizer(value):
        raise ConfigError(f"{key} got a tokenizer object; pass it as tokenizer= (or processing_class=) with a model object")
    if _is_model(value) and not is_data_option(key):
        return register_object("model", (value, tokenizer if key == "model" else None), type(value).__name__)
    if is_data_option(key) and not isinstance(value, (str, Path, type(None))):
        raise ConfigError(f"{key} got {type(value).__name__} {value!r:.60}; expected {DATA_TYPES}")
    if isinstance(value, (list, tuple)):
        return [_option_value(key, v, None) if not callable(v) or _is_model(v) else function_spec(v) for v in value]
    if callable(value):
        return function_spec(value)
    if not isinstance(value, PLAIN):
        raise ConfigError(f"{key} got an object of type {type(value).__name__}, which no option takes; expected a string, "
                          "number, list or dict (a function where the option takes a function spec, a model object for a "
                          f"model option, {DATA_TYPES} for a data option)")
    return value


def _object_values(options: dict, tokenizer) -> dict:
    values = {key: _option_value(key, value, tokenizer) for key, value in options.items()}
    models = [v for v in values.values() if is_object_spec(v) and v.startswith("python:model/")]
    if len(models) != len(set(models)):
        raise ConfigError("the same model object is given to two options; pass a copy (copy.deepcopy) to the second")
    if tokenizer is not None:
        if not _is_tokenizer(tokenizer):
            raise ConfigError(f"tokenizer got {type(tokenizer).__name__}; expected a transformers tokenizer or processor object")
        if not _is_model(options.get("model")):
            raise ConfigError("tokenizer= goes with a model object; with model= a name or directory the tokenizer is "
                              "loaded from there (chat_template= sets another template)")
    elif _is_model(options.get("model")) and not getattr(options["model"].config, "name_or_path", ""):
        raise ConfigError("model is an object with no config.name_or_path to load its tokenizer from; pass tokenizer=")
    return values


def config_for(stage: str, config: str | Path | None = None, *, preset: str | None = None, tokenizer=None,
               processing_class=None, **options):
    """The typed config of `stage` from defaults < preset < YAML file `config` < `options`. Options may
    hold objects (data sets, models, functions); `tokenizer` (TRL: `processing_class`) goes with a model object."""
    from posttrain.config import build_config, read_yaml
    from posttrain.trl_compat import resolve

    config_cls = get_stage(stage).config_class
    values: dict[str, Any] = preset_values(stage, preset)
    if config is not None:
        values.update(resolve(read_yaml(config), config_cls))  # TRL's key names, per source (later sources win)
    values.update(_object_values(resolve(options, config_cls), tokenizer if tokenizer is not None else processing_class))
    return build_config(config_cls, values)


def _data_to_run_dir(config) -> tuple[Any, list[Path]]:
    """A training stage's data objects written to output_dir/data/ (the config, checked, now points there),
    so that config.yaml reproduces the run; (the config, the paths written). Nothing is written for other
    stages, under torchrun (each process keeps its objects) or rows JSON cannot hold."""
    keys = [f.name for f in dataclasses.fields(config) if is_data_option(f.name) and is_object_spec(getattr(config, f.name))]
    if not keys or not all(hasattr(config, k) for k in ("output_dir", "resume", "overwrite_output_dir")) \
            or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return config, []
    from posttrain.data.sources import write_jsonl
    from posttrain.train.rundir import check_run_dir

    data_dir, copies = Path(config.output_dir) / "data", {}
    for key in keys:
        value = python_object(getattr(config, key), key)
        if not isinstance(value, list) and hasattr(value, "keys"):  # a DatasetDict keeps its splits
            copies[data_dir / key] = lambda target, value=value: value.save_to_disk(str(target))
            continue
        rows = value if isinstance(value, list) else value.to_list()
        try:
            json.dumps(rows)
        except (TypeError, ValueError):  # images, bytes, ...: keep the object in this process
            continue
        copies[data_dir / f"{key}.jsonl"] = lambda target, rows=rows: write_jsonl(target, rows)
    config = dataclasses.replace(config, **{target.name.removesuffix(".jsonl"): str(target) for target in copies})
    check_run_dir(config)  # an earlier run in the way (or a resume with other settings) is refused before anything is written
    for target, write in copies.items():
        shutil.rmtree(target, ignore_errors=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        write(target)
    return config, list(copies)


def _remove_written(config, written: list[Path]) -> None:
    """A run that failed before writing config.yaml leaves no data copies behind (nor the directories they made)."""
    root = Path(config.output_dir)
    if not written or (root / "config.yaml").exists():
        return
    for path in written:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    for folder in (root / "data", root):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def run(stage_config, *, callbacks: list | None = None) -> dict:
    """Run a stage from its config (as built by `config_for`); returns what the stage returns:
    the final logged metrics for training stages, the report for eval. `callbacks` are
    transformers TrainerCallbacks (instances or classes) the training loop calls."""
    from posttrain.report.model_card import run_stage
    from posttrain.train.callbacks import using_callbacks

    spec = stage_of_config(stage_config)
    if spec is None:
        raise ConfigError(f"run() takes a stage config from posttrain.config_for(...), got {type(stage_config).__name__}")
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        raise ConfigError(f"callbacks got {type(callbacks).__name__}; expected a list of transformers TrainerCallback objects")
    if callbacks and not any(f.name == "logging_steps" for f in dataclasses.fields(stage_config)):
        raise ConfigError(f"callbacks: the {spec.name} stage trains no model, so no callback would be called; remove callbacks=")
    stage_config, written = _data_to_run_dir(stage_config)
    try:
        with using_callbacks(list(callbacks or [])):
            return run_stage(spec, stage_config)  # final/README.md, and the push with push_to_hub=true
    except BaseException:
        _remove_written(stage_config, written)
        raise


def stage_help(stage: str) -> str:
    """Every option of `stage` with its type, default and meaning (what `posttrain STAGE --help` lists)."""
    from posttrain.config import format_help

    return format_help(get_stage(stage).config_class)


def _stage_function(stage: str) -> Callable[..., dict]:
    def run_this_stage(config: str | Path | None = None, *, preset: str | None = None, callbacks: list | None = None,
                       **options) -> dict:
        return run(config_for(stage, config, preset=preset, **options), callbacks=callbacks)

    run_this_stage.__name__ = run_this_stage.__qualname__ = function_name(stage)
    run_this_stage.__doc__ = (
        f"{STAGES[stage].description}\n\nKeyword arguments are the options of `posttrain {stage}` "
        f"(posttrain.stage_help({stage!r}) lists them); `preset=` applies a named preset, `config=` reads a "
        "YAML file first; `callbacks=` takes transformers TrainerCallbacks, `tokenizer=` a tokenizer object for a "
        "model object. Returns the stage's final metrics (or report).")
    return run_this_stage


STAGE_FUNCTIONS: dict[str, str] = {function_name(stage): stage for stage in STAGES}
globals().update({name: _stage_function(stage) for name, stage in STAGE_FUNCTIONS.items()})
__all__ += list(STAGE_FUNCTIONS)


def generate(model, prompts: list, *, tokenizer=None, chat: bool = False, device: str = "auto",
             dtype: str = "float32", chat_template: str | None = None, trust_remote_code: bool = False,
             details: bool = False, **sampling):
    """Sample completions: `n` texts per prompt, prompt-major (prompt 0's n, then prompt 1's, ...).

    `model` is "embedded", a local directory (e.g. runs/sft/final) or hub id, or a loaded model (then
    pass `tokenizer`, or it is loaded from the model's name_or_path). A prompt is a string or a
    message list; message lists always go through the chat template, strings only with `chat=True`
    (as one user turn). `sampling` are SamplingParams fields: max_new_tokens=128, temperature=1.0
    (0: greedy), top_p=1.0, top_k=0, n=1, stop=[], seed=None. `details=True` returns the
    GenerationOutput (token ids, log-probs, finish reasons) instead of the texts.
    """
    from posttrain.config import build_config
    from posttrain.data.tokenize import tokenize_prompt
    from posttrain.generation import SamplingParams
    from posttrain.generation import generate as sample
    from posttrain.models import load_causal_lm, load_tokenizer, resolve_device

    if isinstance(prompts, (str, dict)) or not prompts:
        raise ConfigError("prompts must be a non-empty list of strings or message lists")
    params = build_config(SamplingParams, sampling)
    if isinstance(model, (str, Path)):
        tokenizer = tokenizer or load_tokenizer(str(model), chat_template, trust_remote_code)
        model = load_causal_lm(str(model), dtype, resolve_device(device), trust_remote_code)
    elif tokenizer is None:
        tokenizer = load_tokenizer(model.config.name_or_path, chat_template, trust_remote_code)
    turns = [[{"role": "user", "content": p}] if chat and isinstance(p, str) else p for p in prompts]
    out = sample(model, tokenizer, [tokenize_prompt(tokenizer, p) for p in turns], params)
    return out if details else out.texts


def _override_text(key: str, value: Any) -> str:
    """A Python value as the `key=value` text load_pipeline parses as YAML (JSON is YAML); objects become
    specs (in-process: a pipeline's stages run in this process), as for a stage function."""
    return json.dumps(_option_value(key.rpartition(".")[2], value, None))


def _pipeline_source(source: str | Path | dict, tmp: str) -> str:
    """A pipeline given as a dict is written to a YAML file first: load_pipeline reads files."""
    if not isinstance(source, dict):
        return str(source)
    import yaml

    data = dict(source)
    stages = []
    for stage in data.get("stages") or []:
        if isinstance(stage, dict) and isinstance(stage.get("config"), dict):
            stage = {**stage, "config": {k: _option_value(k, v, None) for k, v in stage["config"].items()}}
        stages.append(stage)
    if stages:
        data["stages"] = stages
    path = Path(tmp) / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


def run_pipeline(source: str | Path | dict, overrides: dict | None = None, *, log: Callable = print, **top) -> list[dict]:
    """Run a pipeline (`posttrain pipeline`): `source` is a YAML file, a shipped recipe name, or the same
    structure as a dict. `top` sets output_dir, force and the pipeline's vars; `overrides` sets stage
    options as {"sft.max_steps": 10} or {"sft": {"max_steps": 10}} ("defaults.KEY" too). Returns one
    record per stage (name, stage, status, seconds, metrics), also written to output_dir/pipeline.jsonl."""
    from posttrain.pipeline import load_pipeline
    from posttrain.pipeline import run_pipeline as run_loaded

    items = [f"{key}={_override_text(key, value)}" for key, value in top.items()]
    for key, value in (overrides or {}).items():
        if isinstance(value, dict):
            items += [f"{key}.{sub}={_override_text(sub, v)}" for sub, v in value.items()]
        else:
            items.append(f"{key}={_override_text(key, value)}")
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = load_pipeline(_pipeline_source(source, tmp), items)
    return run_loaded(pipeline, log=log)
