"""The shipped `calculator` recipe runs end to end on a fresh clone (sft -> grpo in the calculator
environment), scaled down to seconds, and logs the agent metrics the report shows.

This is the wiring, not the learning: on the 2-core CI machine the SFT that makes the tiny model use the
tool reliably takes minutes, so the learning run (held-out success before vs after GRPO) is
benchmarks/agent_envs.py, its numbers in the README."""

from __future__ import annotations

from conftest import read_metrics

TINY = ["sft.max_steps=2", "sft.batch_size=2", "sft.eval_dataset=task:calculator:test:2", "grpo.max_steps=1",
        "grpo.prompts_per_step=2", "grpo.num_generations=2", "grpo.batch_size=4",
        "grpo.eval_dataset=task:calculator:test:2", "grpo.eval_steps=0", "grpo.max_new_tokens=24"]


def test_calculator_recipe_runs_and_logs_the_agent_metrics(tmp_path):
    from posttrain.pipeline import load_pipeline, run_pipeline

    pipeline = load_pipeline("calculator", [f"output_dir={tmp_path}", "defaults.device=cpu", *TINY])
    records = run_pipeline(pipeline, log=lambda *a, **k: None)
    assert [(r["name"], r["status"]) for r in records] == [("sft", "done"), ("grpo", "done")]
    grpo = read_metrics(tmp_path / "grpo")
    train = next(r for r in grpo if "agent/turns" in r)
    for key in ("agent/turns", "agent/tool_calls", "agent/tool_errors", "agent/parse_errors", "agent/success",
                "agent/env_seconds", "agent/generation_seconds", "reward/tool_use/mean"):
        assert key in train, sorted(train)
    final = grpo[-1]
    for key in ("eval_return", "eval_success", "eval_turns", "eval_tool_calls", "eval_tool_use"):
        assert key in final, sorted(final)
    assert 1.0 <= final["eval_turns"] <= 3.0 and 0.0 <= final["eval_success"] <= 1.0
    assert grpo[0]["step"] == 0 and "eval_success" in grpo[0]  # eval_on_start: the SFT start, before any update
