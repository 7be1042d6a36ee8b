"""`posttrain pipeline`: stages run in order, outputs feed the next stage, finished stages are
skipped on re-run, changed configs need force=true, and bad files fail before anything runs."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from conftest import final_weights, pipeline_file as _pipeline_file, read_metrics, run_cli, sft_rows, write_jsonl
from posttrain.errors import ConfigError
from posttrain.pipeline import load_pipeline, run_pipeline


def _records(run):
    return [json.loads(line) for line in (run / "pipeline.jsonl").read_text().splitlines()]


def test_two_stages_run_feed_and_skip_on_rerun(tmp_path, tiny_llama, capsys):
    path = _pipeline_file(tmp_path, tiny_llama)
    run = tmp_path / "run"
    run_pipeline(load_pipeline(path))

    assert (run / "sft" / "final" / "config.json").exists() and (run / "grpo" / "final" / "config.json").exists()
    assert "tags:\n- posttrain\n- grpo\n" in (run / "grpo" / "final" / "README.md").read_text()  # each stage's model card
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


def test_crashed_stage_with_a_changed_option_needs_force(tmp_path, tiny_llama):
    spec = {"output_dir": str(tmp_path / "run"), "stages": [{"name": "sft", "stage": "sft", "config": {
        "model": tiny_llama, "dataset": write_jsonl(tmp_path / "train.jsonl", sft_rows(8)), "max_steps": 4, "save_steps": 2,
        "batch_size": 2, "max_length": 128, "learning_rate": 1e-3, "logging_steps": 1, "device": "cpu"}}]}
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(spec))
    run = tmp_path / "run"
    run_pipeline(load_pipeline(str(path)))
    shutil.rmtree(run / "sft" / "final")  # what a crash after the last checkpoint leaves
    (run / "sft" / "DONE").unlink()
    assert (run / "sft" / "checkpoints").is_dir()

    proc = run_cli("pipeline", str(path), "sft.batch_size=4")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("posttrain: error: stage sft: batch_size differ"), proc.stderr
    assert "force=true" in lines[0] and "restore the old value" in lines[0], lines[0]
    assert not (run / "sft" / "final").exists()  # refused before any work

    run_pipeline(load_pipeline(str(path), ["sft.batch_size=4", "force=true"]))  # redone from the start
    assert [r["status"] for r in _records(run)] == ["done"] and (run / "sft" / "final" / "config.json").exists()
    assert yaml.safe_load((run / "sft" / "config.yaml").read_text())["batch_size"] == 4
    assert [r["step"] for r in read_metrics(run / "sft") if "loss" in r][0] == 1


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


def test_help_lists_recipes():
    proc = run_cli("pipeline", "--help", env={"COLUMNS": "80"})
    assert proc.returncode == 0
    for name in ("instructgpt", "dpo", "r1zero", "force=true"):
        assert name in proc.stdout
    # The main recipe's description whole, wrapped to the terminal's width.
    assert "R1-Zero GRPO on arithmetic" in " ".join(proc.stdout.split())
    assert max(len(line) for line in proc.stdout.split("recipes:")[1].split("\n\n")[0].splitlines()) <= 80
