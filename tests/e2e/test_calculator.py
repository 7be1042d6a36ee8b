"""The shipped `calculator` recipe learns on a fresh clone: its SFT stage as shipped, then its GRPO
stage scaled down to 8 steps on 16 fixed training problems (8 episodes each per step), where the
share of episodes that end in the right answer rises; the run logs the agent metrics the report shows.

Fixed problems keep the measure honest at this scale: on fresh problems every step the success rate
swings with their difficulty (0.08 to 0.40 between neighbouring steps), more than 8 steps of learning
move it. The held-out rise of the full 40-step recipe is benchmarks/agent_envs.py, its numbers in the
README (0.16 -> 0.27 on 100 test problems)."""

from __future__ import annotations

from conftest import read_metrics

SCALED = ["grpo.dataset=task:calculator:train:16", "grpo.max_steps=8", "grpo.logging_steps=1",
          "grpo.eval_dataset=task:calculator:test:4", "grpo.eval_steps=0", "sft.eval_dataset=task:calculator:test:4"]


def test_calculator_recipe_raises_the_success_of_its_episodes(tmp_path):
    from posttrain.pipeline import load_pipeline, run_pipeline

    pipeline = load_pipeline("calculator", [f"output_dir={tmp_path}", "defaults.device=cpu", *SCALED])
    records = run_pipeline(pipeline, log=lambda *a, **k: None)
    assert [(r["name"], r["status"]) for r in records] == [("sft", "done"), ("grpo", "done")]
    grpo = read_metrics(tmp_path / "grpo")
    train = [r for r in grpo if "agent/success" in r]
    success = [r["agent/success"] for r in train]
    # measured 0.15 -> 0.30, and 0.14 -> 0.18 on another clean clone: the runs are not bit-identical (the SFT
    # start's first success differs too), and 8 RL steps amplify that; the rise held on every run
    assert len(success) == 8 and sum(success[-3:]) / 3 > success[0] + 0.03, success
    assert min(r["reward/tool_use/mean"] for r in train) > 0.9  # the SFT protocol holds while the answers improve
    for key in ("agent/turns", "agent/tool_calls", "agent/tool_errors", "agent/parse_errors", "agent/env_seconds",
                "agent/generation_seconds"):
        assert key in train[0], sorted(train[0])
    assert grpo[0]["step"] == 0 and "eval_success" in grpo[0]  # eval_on_start: the SFT start, before any update
    final = grpo[-1]
    for key in ("eval_return", "eval_success", "eval_turns", "eval_tool_calls", "eval_tool_use"):
        assert key in final, sorted(final)
