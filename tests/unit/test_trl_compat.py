"""TRL's config keys as aliases: checked against TRL's own dataclasses (trl 1.16), on every stage."""

from __future__ import annotations

import dataclasses
import ast
import importlib.util
from pathlib import Path

import pytest

from posttrain.config import build_config, format_help, load_config
from posttrain.errors import ConfigError
from posttrain.stages import STAGES
from posttrain.trl_compat import ALIASES, IGNORED, LEGACY, UNSUPPORTED, resolve

pytest.importorskip("trl", reason="the alias table is checked against TRL's dataclasses")

OLDER_TRL = {"logging_dir", "max_prompt_length"}  # fields of transformers < 5 / TRL < 1.0 (the aliases say so with LEGACY)


# TRL's config dataclasses, read from their source (importing them loads peft: ~10 s)
TRL_CONFIG_FILES = ["trainer/grpo_config.py", "trainer/rloo_config.py", "trainer/dpo_config.py", "trainer/sft_config.py",
                    "trainer/kto_config.py", "trainer/reward_config.py", "trainer/distillation_config.py", "trainer/model_config.py",
                    "scripts/utils.py", "experimental/online_dpo/online_dpo_config.py", "experimental/gkd/gkd_config.py"]


def dataclass_fields(path: Path) -> set[str]:
    """The annotated names of every class body in `path` (a dataclass's fields)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {stmt.target.id for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
            for stmt in node.body if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)}


def trl_fields() -> set[str]:
    """Every field of TRL's GRPOConfig, ..., ModelConfig, ScriptArguments and transformers' TrainingArguments."""
    root = Path(importlib.util.find_spec("trl").origin).parent
    args = Path(importlib.util.find_spec("transformers").origin).parent / "training_args.py"
    return set().union(dataclass_fields(args), *(dataclass_fields(root / name) for name in TRL_CONFIG_FILES))


def stage_fields() -> dict[str, set[str]]:
    return {name: {f.name for f in dataclasses.fields(spec.config_class)} for name, spec in STAGES.items()}


def test_every_key_is_trls_and_none_is_ours():
    """The table holds TRL's real names (or a documented older one), and never one of our options."""
    fields, ours = trl_fields(), set().union(*stage_fields().values())
    for key, alias in ALIASES.items():
        assert key in fields or alias.note == LEGACY, key
        assert key not in ours, key
    for key in [*UNSUPPORTED, *IGNORED]:
        assert key in fields or key in OLDER_TRL, key
        assert key not in ours or key in ("generation_batch_size", "dataset_num_proc"), key  # ours in some stages: read as ours there


def test_each_alias_sets_its_option_on_every_stage_that_has_it_and_is_refused_elsewhere():
    values = {"bf16": True, "fp16": True, "use_peft": True, "sync_ref_model": True, "precompute_ref_log_probs": True,
              "resume_from_checkpoint": True, "lr_scheduler_type": "linear"}
    for alias_key, alias in ALIASES.items():
        value = values.get(alias_key, 7)
        has_it = [name for name, fields in stage_fields().items() if alias.option in fields]
        assert has_it, f"{alias_key} -> {alias.option}: no stage has that option"
        for name, spec in STAGES.items():
            if name in has_it:
                out = resolve({alias_key: value}, spec.config_class)
                assert alias_key not in out and alias.option in out, (alias_key, name)
            else:
                with pytest.raises(ConfigError, match=f"TRL key '{alias_key}' sets posttrain's '{alias.option}'"):
                    resolve({alias_key: value}, spec.config_class)


def test_values_are_translated():
    grpo, dpo = STAGES["grpo"].config_class, STAGES["dpo"].config_class
    assert resolve({"bf16": True, "gradient_checkpointing": True}, grpo) == {"mixed_precision": "bf16", "gradient_checkpointing": True}
    assert resolve({"bf16": "false", "fp16": False, "use_peft": False}, grpo) == {}
    assert resolve({"epsilon": 0.3}, grpo) == {"epsilon_low": 0.3, "epsilon_high": 0.3}
    assert resolve({"epsilon": 0.2, "epsilon_high": 0.28}, grpo) == {"epsilon_low": 0.2, "epsilon_high": 0.28}  # DAPO's clip-higher
    assert resolve({"loss_type": "dapo", "scale_rewards": False}, grpo) == {"loss_type": "token_mean", "scale_rewards": "none"}
    assert resolve({"loss_type": ["sigmoid"]}, dpo) == {"loss_type": ["sigmoid"]}
    assert resolve({"lr_scheduler_type": "constant_with_warmup", "save_total_limit": None}, grpo) == {"lr_scheduler": "constant", "keep_last": 0}
    assert resolve({"sync_ref_model": True, "ref_model_mixup_alpha": 0.5, "ref_model_sync_steps": 64}, dpo) == {
        "ref_sync": "soft", "ref_sync_alpha": 0.5, "ref_sync_steps": 64}
    assert resolve({"precompute_ref_log_probs": True}, dpo) == {"ref_model": "precompute"}
    cfg = build_config(grpo, {"model_name_or_path": "embedded", "dataset_name": "task:arithmetic", "num_train_epochs": 2,
                              "per_device_train_batch_size": 4, "max_completion_length": 16, "torch_dtype": "float32",
                              "importance_sampling_level": "sequence", "mask_truncated_completions": True})
    assert (cfg.num_epochs, cfg.batch_size, cfg.max_new_tokens, cfg.ratio_level, cfg.mask_truncated) == (2.0, 4, 16, "sequence", True)


def test_an_alias_and_our_name_together_is_an_error_but_a_later_source_overrides(tmp_path):
    grpo = STAGES["grpo"].config_class
    with pytest.raises(ConfigError, match="'model_name_or_path' \\(TRL's name\\) and 'model' both set 'model'"):
        resolve({"model_name_or_path": "a", "model": "b"}, grpo)
    with pytest.raises(ConfigError, match="'fp16' \\(TRL's name\\) and 'bf16' both set 'mixed_precision'"):
        resolve({"bf16": True, "fp16": True}, grpo)
    (tmp_path / "trl.yaml").write_text("model_name_or_path: from_file\nmax_completion_length: 16\n")
    cfg = load_config(grpo, str(tmp_path / "trl.yaml"), ["model=from_command_line", "max_new_tokens=24"])
    assert (cfg.model, cfg.max_new_tokens) == ("from_command_line", 24)


def test_keys_without_an_equivalent_say_why_unless_off(capsys):
    grpo = STAGES["grpo"].config_class
    with pytest.raises(ConfigError, match="TRL key 'max_prompt_length' has no posttrain equivalent: .*max_length"):
        resolve({"max_prompt_length": 256}, grpo)
    with pytest.raises(ConfigError, match="TRL key 'use_vllm' has no posttrain equivalent"):
        resolve({"use_vllm": True}, grpo)
    with pytest.raises(ConfigError, match="resume_from=runs/x/checkpoint-500"):
        resolve({"resume_from_checkpoint": "runs/x/checkpoint-500"}, grpo)
    assert resolve({"use_vllm": False, "max_prompt_length": None, "use_dora": False}, grpo) == {}
    assert resolve({"load_in_4bit": True}, grpo) == {"load_in_4bit": True}  # ours now (QLoRA)
    assert resolve({"dataloader_num_workers": 4, "do_train": True}, grpo) == {}
    err = capsys.readouterr().err
    assert "TRL key 'dataloader_num_workers' ignored" in err and "TRL key 'do_train' ignored" in err
    pairs = STAGES["pairs"].config_class  # a stage whose own option has TRL's name keeps it
    assert resolve({"generation_batch_size": 32}, pairs) == {"generation_batch_size": 32}


def test_help_names_the_trl_keys():
    text = format_help(STAGES["grpo"].config_class)
    assert "max_new_tokens (int, default: 128)  [TRL: max_completion_length, response_length]" in text
    assert "[TRL: model_name_or_path, sft_model_path]" in text


def test_the_api_reads_trl_keys_per_source(tmp_path):
    from posttrain.api import config_for

    (tmp_path / "trl.yaml").write_text("model_name_or_path: from_file\nper_device_train_batch_size: 4\n")
    cfg = config_for("sft", tmp_path / "trl.yaml", model="from_keyword", num_train_epochs=3)
    assert (cfg.model, cfg.batch_size, cfg.num_epochs) == ("from_keyword", 4, 3.0)


def test_the_docs_table_lists_every_key():
    text = (Path(__file__).resolve().parents[2] / "docs" / "coming_from_trl.md").read_text(encoding="utf-8")
    for key in [*ALIASES, *UNSUPPORTED, *IGNORED]:
        assert f"`{key}" in text, key
