"""`posttrain pipeline`: stages run in order, outputs feed the next stage, finished stages are
skipped on re-run, changed configs need force=true, and bad files fail before anything runs."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from conftest import final_weights, read_metrics, run_cli, sft_rows, write_jsonl
from posttrain.errors import ConfigError
from posttrain.pipeline import load_pipeline, recipes, run_pipeline


def _pipeline_file(tmp_path, model, **grpo_extra) -> str:
    """sft on a tiny file, then grpo from `${sft.final}` with the built-in format reward."""
    data = write_jsonl(tmp_path / "train.jsonl", sft_rows(8))
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"What is {i} + 1?"} for i in range(8)])
    spec = {
        "output_dir": str(tmp_path / "run"),
        "defaults": {"device": "cpu", "seed": 3, "logging_steps": 1, "max_length": 128},
        "stages": [
            {"name": "sft", "stage": "sft",
             "config": {"model": model, "dataset": data, "max_steps": 2, "batch_size": 4, "learning_rate": 1e-3}},
            {"name": "grpo", "stage": "grpo", "preset": "grpo",
             "config": {"model": "${sft.final}", "dataset": prompts, "reward_funcs": ["format"], "max_steps": 2,
                        "prompts_per_step": 2, "num_generations": 2, "max_new_tokens": 6, "batch_size": 4,
                        "learning_rate": 1e-3, **grpo_extra}},
        ],
    }
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def _records(run):
    return [json.loads(line) for line in (run / "pipeline.jsonl").read_text().splitlines()]


def test_two_stages_run_feed_and_skip_on_rerun(tmp_path, tiny_llama, capsys):
    path = _pipeline_file(tmp_path, tiny_llama)
    run = tmp_path / "run"
    run_pipeline(load_pipeline(path))

    assert (run / "sft" / "final" / "config.json").exists() and (run / "grpo" / "final" / "config.json").exists()
    resolved = yaml.safe_load((run / "pipeline.yaml").read_text())
    assert resolved["stages"][1]["config"]["model"] == str(run / "sft" / "final")  # the reference, resolved
    assert resolved["stages"][1]["config"]["beta"] == 0.04  # the grpo preset applied
    assert yaml.safe_load((run / "grpo" / "config.yaml").read_text())["model"] == str(run / "sft" / "final")
    assert resolved["stages"][0]["config"]["seed"] == 3  # defaults reach every stage
    records = _records(run)
    assert [(r["name"], r["status"]) for r in records] == [("sft", "done"), ("grpo", "done")]
    assert records[1]["metrics"]["step"] == 2 and records[1]["metrics"] == read_metrics(run / "grpo")[-1]
    assert all(r["seconds"] > 0 for r in records)
    out = capsys.readouterr().out
    assert "[1/2] sft (sft): running" in out and "[2/2] grpo (grpo): done in" in out

    weights = final_weights(run / "grpo")
    run_pipeline(load_pipeline(path))  # re-run: both finished with the same config
    assert [(r["name"], r["status"], r["seconds"]) for r in _records(run)] == [("sft", "skipped", 0.0), ("grpo", "skipped", 0.0)]
    assert _records(run)[1]["metrics"] == records[1]["metrics"]
    assert "[1/2] sft (sft): skipped" in capsys.readouterr().out
    assert all((weights[k] == v).all() for k, v in final_weights(run / "grpo").items())

    # a changed upstream config changes the downstream stage's hash too: force redoes both
    with pytest.raises(ConfigError, match=r"stage sft: its config .* changed .* force=true"):
        run_pipeline(load_pipeline(path, ["sft.learning_rate=2e-3"]))
    # the error came before any work: the finished runs are untouched
    assert [r["status"] for r in _records(run)] == ["skipped", "skipped"]
    run_pipeline(load_pipeline(path, ["sft.learning_rate=2e-3", "force=true"]))
    assert [r["status"] for r in _records(run)] == ["done", "done"]
    assert yaml.safe_load((run / "sft" / "config.yaml").read_text())["learning_rate"] == 2e-3


def test_crashed_stage_is_resumed(tmp_path, tiny_llama, capsys):
    path = _pipeline_file(tmp_path, tiny_llama)
    run = tmp_path / "run"
    pipeline = load_pipeline(path)
    run_pipeline(pipeline)
    # what a crash leaves: a run directory without final/ or the DONE marker
    shutil.rmtree(run / "grpo" / "final")
    (run / "grpo" / "DONE").unlink()
    run_pipeline(load_pipeline(path))
    assert [r["status"] for r in _records(run)] == ["skipped", "done"]
    assert "[2/2] grpo (grpo): resuming" in capsys.readouterr().out
    assert (run / "grpo" / "final" / "config.json").exists()


def test_bad_reference_fails_before_anything_runs(tmp_path, tiny_llama):
    spec = yaml.safe_load(open(_pipeline_file(tmp_path, tiny_llama)))
    spec["stages"][1]["config"]["model"] = "${rm.final}"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = run_cli("pipeline", str(path))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "stage 2 (grpo)" in lines[0] and "${rm.final}" in lines[0] and "earlier stages: sft" in lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("edit, fragments", [
    (lambda s: s["stages"].__setitem__(1, {**s["stages"][1], "stage": "gpro"}), ["stage 2 (grpo)", "unknown stage type 'gpro'", "valid:"]),
    (lambda s: s["stages"][0]["config"].__setitem__("lerning_rate", 1), ["stage 1 (sft)", "lerning_rate", "did you mean 'learning_rate'"]),
    (lambda s: s["stages"][1]["config"].__setitem__("model", "${sft.checkpoint}"), ["stage 2 (grpo)", "use ${sft.final}"]),
    (lambda s: s["stages"][0]["config"].__setitem__("model", "${grpo.final}"), ["stage 1 (sft)", "no earlier stage 'grpo'"]),
    (lambda s: s["stages"][1].__setitem__("preset", "nope"), ["stage 2 (grpo)", "unknown preset 'nope'", "dapo"]),
    (lambda s: s["defaults"].__setitem__("bogus", 1), ["defaults key(s) bogus"]),
])
def test_invalid_files_are_one_clear_error(tmp_path, tiny_llama, edit, fragments):
    spec = yaml.safe_load(open(_pipeline_file(tmp_path, tiny_llama)))
    edit(spec)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError) as info:
        load_pipeline(str(path))
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_override_lists_valid_ones(tmp_path, tiny_llama):
    with pytest.raises(ConfigError, match=r"unknown pipeline override 'max_steps'; valid: output_dir, force, defaults.KEY, sft.KEY, grpo.KEY"):
        load_pipeline(_pipeline_file(tmp_path, tiny_llama), ["max_steps=3"])


def test_shipped_recipes_validate(tmp_path):
    assert set(recipes()) >= {"instructgpt", "dpo", "rs_dpo", "online_dpo", "rlaif", "r1zero"}
    out = str(tmp_path / "x")
    igpt = load_pipeline("instructgpt", [f"output_dir={out}"])  # needs no files: a pairs stage samples them
    assert [(s.name, s.stage) for s in igpt.stages] == [("sft", "sft"), ("pairs", "pairs"), ("rm", "rm"), ("ppo", "ppo"),
                                                         ("compare", "compare")]
    pairs, rm, ppo, compare = (s.config for s in igpt.stages[1:])
    assert compare.policies == [f"ppo={out}/ppo/final"] and compare.selector_funcs == [f"reward_model:path={out}/rm/final"]
    assert pairs.model == rm.model == ppo.model == f"{out}/sft/final" and pairs.labels == "bradley_terry"
    assert rm.dataset == f"{out}/pairs/final/pairs.jsonl"
    assert ppo.reward_model == f"{out}/rm/final" and ppo.kl_coef == 0.02  # the instructgpt preset
    dpo = load_pipeline("dpo")
    assert [s.stage for s in dpo.stages] == ["sft", "pairs", "dpo", "compare"] and dpo.stages[2].config.model == "runs/dpo/sft/final"
    rs = load_pipeline("rs_dpo").stages[1].config
    assert (rs.selection, rs.labels, rs.num_samples) == ("max_gap", "hard", 4)
    online = load_pipeline("online_dpo").stages
    assert [s.stage for s in online] == ["sft", "pairs", "dpo", "pairs", "dpo", "compare"]
    assert online[5].config.policies == ["dpo_round1=runs/online_dpo/dpo1/final", "dpo_round2=runs/online_dpo/dpo2/final"]
    assert online[4].config.ref_model_path is None  # the reference is refreshed: round 2's starts as the round-1 policy
    fixed = load_pipeline("online_dpo", ["dpo2.ref_model_path=${sft.final}"]).stages[4].config
    assert fixed.ref_model_path == "runs/online_dpo/sft/final"
    assert online[3].config.model == online[4].config.model == "runs/online_dpo/dpo1/final"
    rlaif = load_pipeline("rlaif", ["judge_model=J"]).stages[1].config
    assert rlaif.labels == "judge" and rlaif.judge == "pairwise_judge:model=J:method=logprob"
    assert load_pipeline("rlaif").stages[1].config.judge == "pairwise_judge:model=embedded-judge:method=logprob"
    r1 = load_pipeline("r1zero", ["grpo.max_steps=7"])
    (grpo,) = r1.stages
    assert grpo.config.model == "embedded" and grpo.config.dataset == "task:arithmetic"
    assert grpo.config.reward_funcs == ["math_accuracy", "format"] and grpo.config.beta == 0.04 and grpo.config.max_steps == 7
    main = load_pipeline("main", [f"output_dir={out}"]).stages
    assert [s.stage for s in main] == ["sft", "pairs", "rm", "ppo", "dpo", "compare", "eval", "grpo", "eval"]
    compare = main[5].config
    assert compare.policies == [f"ppo={out}/ppo/final", f"dpo={out}/dpo/final"] and compare.reference == f"{out}/sft/final"
    assert compare.selector_funcs == [f"reward_model:path={out}/rm/final"] and main[8].config.model == f"{out}/r1zero/final"
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()


def test_help_lists_recipes():
    proc = run_cli("pipeline", "--help")
    assert proc.returncode == 0
    for name in ("instructgpt", "dpo", "r1zero", "force=true"):
        assert name in proc.stdout
