"""The Python API end to end: stage functions train and write the run dir, a Python function trains GRPO as a
reward, and a pipeline given as a dict runs with a Python scorer."""

from __future__ import annotations

import json

import pytest

import posttrain
from conftest import SFT_KEYWORDS as SFT, read_metrics, sft_rows, without_timing, write_jsonl


def test_sft_runs_writes_final_and_returns_the_last_metrics(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", sft_rows(16))
    out = tmp_path / "run"
    metrics = posttrain.sft(model=tiny_llama, dataset=data, output_dir=str(out), **SFT)
    assert (out / "final" / "config.json").is_file() and (out / "config.yaml").is_file()
    assert "stage `sft`" in (out / "final" / "README.md").read_text()  # the model card (report/model_card.py)
    logged = read_metrics(out)
    assert metrics["step"] == 2 and logged[-1]["step"] == 2
    assert without_timing([metrics]) == without_timing([{k: v for k, v in logged[-1].items() if k in metrics}])


def test_grpo_trains_on_a_python_reward_function(tiny_llama, tmp_path):
    seen: list[float] = []

    def letter_e(prompts, completions, **columns):
        values = [c.count("e") / max(1, len(c)) for c in completions]
        seen.extend(values)
        return values

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Say something {i}:"} for i in range(4)])
    metrics = posttrain.grpo(model=tiny_llama, dataset=prompts, reward_funcs=[letter_e], output_dir=str(tmp_path / "grpo"),
                             max_steps=1, prompts_per_step=2, num_generations=4, max_new_tokens=8, max_length=64,
                             batch_size=8, logging_steps=1, device="cpu")
    assert len(seen) == 8 and (tmp_path / "grpo" / "final" / "config.json").is_file()
    assert metrics["reward/mean"] == pytest.approx(sum(seen) / len(seen), abs=1e-6)


def test_pipeline_from_a_dict_with_a_python_scorer(tiny_llama, tmp_path):
    def has_digit(prompts, completions, **columns):
        return [float(any(ch.isdigit() for ch in c)) for c in completions]

    data = write_jsonl(tmp_path / "train.jsonl", sft_rows(8, conversational=False))
    held_out = write_jsonl(tmp_path / "held.jsonl", [{"prompt": f"What is {i} + 1?"} for i in range(3)])
    spec = {"stages": [
        {"name": "sft", "config": {"model": tiny_llama, "dataset": data, **SFT, "max_steps": 1}},
        {"name": "eval", "config": {"model": "${sft.final}", "dataset": held_out, "scorer": has_digit, "max_new_tokens": 4, "device": "cpu"}},
    ]}
    records = posttrain.run_pipeline(spec, {"sft": {"learning_rate": 5e-4}}, output_dir=str(tmp_path / "pipe"), log=lambda *a, **k: None)
    assert [(r["name"], r["status"]) for r in records] == [("sft", "done"), ("eval", "done")]
    report = json.loads((tmp_path / "pipe" / "eval" / "eval.json").read_text())
    assert report["num_prompts"] == 3 and report["score"] == records[1]["metrics"]["score"]
    assert posttrain.config_for("sft", tmp_path / "pipe" / "sft" / "config.yaml").learning_rate == 5e-4
