"""`posttrain pairs` end to end: the stage on the embedded model writes pairs that `load_pairs` reads, bad options
are one line and exit 2, and the `dpo` recipe runs with no files."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from posttrain.algorithms.pairs import PairsConfig, run_pairs
from posttrain.config import build_config
from posttrain.errors import ConfigError


def test_stage_writes_pairs_that_dpo_loads(tmp_path):
    from posttrain.data.pairs import load_pairs
    from posttrain.data.readers import read_records
    from posttrain.models.loading import load_tokenizer

    out = tmp_path / "pairs"
    config = build_config(PairsConfig, {"output_dir": str(out), "prompts": 6, "eval_prompts": 3, "num_samples": 3,
                                        "selection": "max_gap", "labels": "bradley_terry", "max_new_tokens": 12,
                                        "device": "cpu"})
    metrics = run_pairs(config)
    rows = [json.loads(line) for line in (out / "final" / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["pairs"] > 0 and {"prompt", "chosen", "rejected", "chosen_reward", "rejected_reward"} <= set(rows[0])
    assert rows[0]["chosen"][0]["role"] == "assistant"  # the sentiment task is conversational
    assert (out / "final" / "eval_pairs.jsonl").is_file() and (out / "config.yaml").is_file()
    assert json.loads((out / "metrics.jsonl").read_text())["pairs"] == metrics["pairs"]
    pairs_file = str(out / "final" / "pairs.jsonl")
    examples, dropped = load_pairs(load_tokenizer("embedded"), read_records(pairs_file), pairs_file,
                                   max_length=256, truncation=False)
    assert len(examples) == len(rows) and not dropped
    with pytest.raises(ConfigError, match="already holds finished pairs"):
        run_pairs(config)


def test_bad_option_is_one_line_exit_2():
    proc = run_cli("pairs", "selection=best_of", "device=cpu")
    assert proc.returncode == 2 and "selection" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("pairs", "num_samples=1")
    assert proc.returncode == 2 and "num_samples must be >= 2" in proc.stderr


def test_dpo_recipe_runs_with_no_files(tmp_path):
    from posttrain.pipeline import load_pipeline, run_pipeline

    overrides = [f"output_dir={tmp_path / 'run'}", "defaults.device=cpu",
                 "sft.max_steps=2", "sft.batch_size=4", "pairs.prompts=8", "pairs.eval_prompts=4", "pairs.max_new_tokens=12",
                 "dpo.max_steps=2", "dpo.batch_size=4", "dpo.logging_steps=1", "compare.prompts=4", "compare.max_new_tokens=12"]
    records = run_pipeline(load_pipeline("dpo", overrides), log=lambda *a, **k: None)
    assert [r["status"] for r in records] == ["done"] * 4 and records[1]["metrics"]["pairs"] > 0
    assert (tmp_path / "run" / "dpo" / "final").is_dir()
    assert (tmp_path / "run" / "compare" / "final" / "evaluations.jsonl").is_file()
    again = run_pipeline(load_pipeline("dpo", overrides), log=lambda *a, **k: None)
    assert [r["status"] for r in again] == ["skipped"] * 4  # the pairs and compare stages count as finished


def test_a_reward_call_past_reward_timeout_is_abandoned_warned_and_counted(tmp_path, capsys):
    import time

    rewards = tmp_path / "rewards.py"
    rewards.write_text("import time\n\ndef hangs(prompts, completions, **columns):\n    time.sleep(30)\n"
                       "    return [1.0] * len(completions)\n\ndef length(prompts, completions, **columns):\n"
                       "    return [float(len(str(c)) % 5) for c in completions]\n")
    config = build_config(PairsConfig, {"output_dir": str(tmp_path / "pairs"), "prompts": 6, "num_samples": 4,
                                        "max_new_tokens": 64, "dataset": "task:arithmetic", "reward_timeout": 1,
                                        "reward_funcs": [f"{rewards}:hangs", f"{rewards}:length"], "device": "cpu"})
    started = time.monotonic()
    metrics = run_pairs(config)
    assert time.monotonic() - started < 25  # the hung call was left behind, not waited for
    assert metrics["reward_timeouts"] == 1 and metrics["pairs"] >= 1
    assert "reward function 'hangs' timed out on 1 call(s) (reward_timeout=1 s)" in capsys.readouterr().err
