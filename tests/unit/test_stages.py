"""The stage registry (posttrain/stages.py): every stage resolves, presets resolve and build, unknown
names give the one-line errors that list the valid ones, the report's RL stages come from the kinds,
and the CLI, API, pipeline and report read this one table instead of keeping their own."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import posttrain
from posttrain.cli import main
from posttrain.config import build_config
from posttrain.errors import ConfigError
from posttrain.pipeline import load_pipeline
from posttrain.report import collect
from posttrain.stages import KINDS, STAGES, get_stage, preset_values, stage_names, stage_of_config

SRC = Path(posttrain.__file__).parent
SURFACES = ("posttrain.cli", "posttrain.api", "posttrain.pipeline", "posttrain.report")
VALID_STAGES = "sft, eval, distill, rm, prm, dpo, kto, grpo, rloo, ppo, online_dpo, rejection, pairs, compare, constitution, annotate, quickstart"
GRPO_PRESETS = "grpo, dapo, dr_grpo, gspo, grpo_plus, rloo, reinforce, reinforce_pp, remax, p3o"


@pytest.mark.parametrize("name", list(STAGES))
def test_every_stage_resolves_its_config_class_and_runner(name):
    spec = get_stage(name)
    assert spec.name == name and spec.kind in KINDS and spec.description.endswith(".")
    assert dataclasses.is_dataclass(spec.config_class) and spec.config_class.__name__ == spec.config_name
    assert callable(spec.runner) and spec.runner.__name__ == spec.runner_name
    config = object.__new__(spec.config_class)  # some need a dataset to validate; only the type matters here
    assert stage_of_config(config) is spec  # the API's run() finds the stage from its config


@pytest.mark.parametrize("name", [name for name, spec in STAGES.items() if spec.presets])
def test_presets_resolve_and_build_a_config(name):
    spec = get_stage(name)
    for preset, values in spec.presets.items():
        resolved = preset_values(name, preset)
        assert resolved == values and resolved is not values  # a copy: callers may update it
        config = build_config(spec.config_class, resolved)
        assert all(getattr(config, key) == value for key, value in values.items()), preset
    assert preset_values(name, None) == {}


def test_stages_with_presets():
    assert {name for name, spec in STAGES.items() if spec.presets} == {"dpo", "grpo", "rloo", "ppo", "online_dpo", "rejection", "distill", "pairs", "eval"}
    assert get_stage("rloo").presets is get_stage("grpo").presets  # one module, one PRESETS


def test_unknown_stage_and_preset_name_the_valid_ones(capsys):
    with pytest.raises(ConfigError) as err:
        get_stage("sfx")
    assert str(err.value) == f"unknown stage 'sfx'; valid stages: {VALID_STAGES}"
    with pytest.raises(ConfigError) as err:
        preset_values("grpo", "simpo")
    assert str(err.value) == f"unknown preset 'simpo' for grpo; valid presets: {GRPO_PRESETS}"
    with pytest.raises(ConfigError) as err:
        preset_values("sft", "x")
    assert str(err.value) == "unknown preset 'x' for sft; valid presets: none"

    # the same lines through the CLI and the API
    assert main(["sfx"]) == 2
    assert capsys.readouterr().err == f"posttrain: error: unknown stage 'sfx'; valid stages: {VALID_STAGES}\n"
    assert main(["grpo", "--preset", "simpo"]) == 2
    assert capsys.readouterr().err == f"posttrain: error: unknown preset 'simpo' for grpo; valid presets: {GRPO_PRESETS}\n"
    with pytest.raises(ConfigError, match="^unknown preset 'x' for sft; valid presets: none$"):
        posttrain.config_for("sft", preset="x")
    with pytest.raises(ConfigError, match="^run\\(\\) takes a stage config from posttrain.config_for"):
        posttrain.run(object())


@pytest.mark.parametrize("stage, expected", [
    ({"name": "a", "stage": "gpro"}, f"stage 1 (a): unknown stage type 'gpro'; valid: {VALID_STAGES}"),
    ({"name": "a", "stage": "grpo", "preset": "nope"}, f"stage 1 (a): unknown preset 'nope' for grpo; valid: {GRPO_PRESETS}"),
    ({"name": "a", "stage": "sft", "preset": "nope"}, "stage 1 (a): unknown preset 'nope' for sft; valid: none"),
])
def test_pipeline_words_the_registry_errors_for_its_file(tmp_path, stage, expected):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "stages": [stage]}))
    with pytest.raises(ConfigError) as err:
        load_pipeline(str(path))
    assert str(err.value) == expected


def test_kinds_and_the_report_rl_stages():
    assert set(KINDS) == {spec.kind for spec in STAGES.values()}
    assert collect.RL_STAGES == stage_names("rl") == ("grpo", "rloo", "ppo", "online_dpo")
    assert stage_names("eval") == ("eval", "compare") and stage_names("sample") == ("pairs", "annotate")
    with pytest.raises(ValueError, match="unknown stage kind 'offline'; valid: train, rl, sample, eval"):
        stage_names("offline")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every posttrain module `path` imports (absolute or relative, at the top or inside a function)."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("posttrain")}


SOURCES = {_module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def test_only_main_imports_the_cli():
    importers = sorted(module for module, path in SOURCES.items() if "posttrain.cli" in _imports(path))
    assert importers == ["posttrain.__main__"]


def test_only_the_surfaces_import_the_registry():
    importers = {module for module, path in SOURCES.items() if "posttrain.stages" in _imports(path)}
    assert importers and all(module.startswith(SURFACES) for module in importers), importers
    assert {"posttrain.cli", "posttrain.api", "posttrain.pipeline", "posttrain.report.collect"} <= importers


def test_the_stage_table_exists_only_in_the_registry():
    for module, path in SOURCES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assigned = {target.id for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    if isinstance(target, ast.Name)}
        if module != "posttrain.stages":
            assert "STAGES" not in assigned, f"{module} defines its own STAGES"
        if module.startswith(SURFACES):  # no stage module paths, runner names or PRESETS lookups of their own
            text = path.read_text(encoding="utf-8")
            for spec in STAGES.values():
                assert f'"{spec.module_name}"' not in text and f'"{spec.runner_name}"' not in text, (module, spec.name)
            assert "PRESETS" not in text, module


def test_reading_the_table_imports_no_stage_module():
    code = ("import sys, posttrain.stages, posttrain.cli; from posttrain.cli import _usage; _usage(); "
            "loaded = [m for m in sys.modules if m in ('torch', 'transformers', 'yaml') or "
            "m.startswith(('posttrain.algorithms', 'posttrain.eval', 'posttrain.quickstart'))]; assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_default_run_directories_never_collide():
    """Each stage with a run directory defaults to runs/<stage>; pipelines to runs/pipeline-<name>, so
    neither a stage run after another nor a recipe lands in a directory another default uses."""
    from posttrain.pipeline import recipes

    defaults = {}
    for name, spec in STAGES.items():
        fields = {f.name: f for f in dataclasses.fields(spec.config_class)}
        if "output_dir" in fields:
            defaults[name] = fields["output_dir"].default
    assert defaults == {name: f"runs/{name}" for name in defaults}
    assert set(defaults) >= {"sft", "rm", "prm", "dpo", "kto", "grpo", "rloo", "ppo", "rejection", "pairs", "compare", "constitution"}
    pipelines = {name: str(load_pipeline(name).output_dir) for name in recipes()}
    assert pipelines == {name: f"runs/pipeline-{name}" for name in recipes()}
    assert not set(pipelines.values()) & set(defaults.values())


def test_eval_reports_are_named_after_what_they_measure():
    """The README's three evaluations of one model write three files under runs/eval, none in the model."""
    from posttrain.eval.evaluate import EvalConfig, default_output_file

    greedy = default_output_file(build_config(EvalConfig, {"model": "runs/sft/final", "dataset": "task:arithmetic:test"}))
    sampled = default_output_file(build_config(EvalConfig, {"model": "runs/sft/final", "dataset": "task:arithmetic:test",
                                                            "num_samples": 8, "temperature": 1.0}))
    prompts = default_output_file(build_config(EvalConfig, {"model": "runs/sft/final", "dataset": "examples/prompts.jsonl"}))
    assert greedy == "runs/eval/runs_sft_final__task_arithmetic_test.json"
    assert sampled == "runs/eval/runs_sft_final__task_arithmetic_test__k8-t1.json"
    assert prompts == "runs/eval/runs_sft_final__examples_prompts.jsonl.json"


def test_eval_and_pairs_list_no_lora_options():
    """Stages that train nothing do not offer the LoRA options they would ignore."""
    for name in ("eval", "pairs", "compare"):
        assert not {f.name for f in dataclasses.fields(get_stage(name).config_class)} & {"lora", "lora_r", "merge_lora"}
