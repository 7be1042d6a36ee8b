"""Multi-turn RL learns through episodes: on a tiny model, an environment that answers the first turn
and pays only for the second (the share of 'a' in it) — the reward, earned after an observation the
model did not write, rises under GRPO and under PPO (GAE across the turns)."""

from __future__ import annotations

import pytest

from conftest import read_metrics, run_cli, write_jsonl

ENVIRONMENT = '''
from posttrain.agents.environment import Turn


class SecondTurnPays:
    """Turn 1 is answered with "Again:"; turn 2 earns the share of 'a' in it and ends the episode."""
    def reset(self, row):
        self.turn = 0
        return [{"role": "user", "content": row["prompt"]}]

    def step(self, reply):
        self.turn += 1
        if self.turn == 1:
            return Turn([{"role": "user", "content": "Again:"}])
        share = reply.count("a") / max(1, len(reply))
        return Turn(done=True, reward=share, info={"success": share > 0.25})
'''


@pytest.mark.parametrize("stage, extra", [("grpo", ["learning_rate=5e-3", "num_generations=8"]),
                                          ("ppo", ["learning_rate=5e-3", "kl_coef=0.0", "num_generations=8", "num_iterations=1", "num_minibatches=1"])])
def test_the_reward_of_a_later_turn_rises(tiny_llama, tmp_path, stage, extra):
    (tmp_path / "env.py").write_text(ENVIRONMENT)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Say something {i}:"} for i in range(16)])
    out = tmp_path / stage
    result = run_cli(stage, f"model={tiny_llama}", f"dataset={prompts}", f"environment={tmp_path}/env.py:SecondTurnPays",
                     "reward_funcs=[]", "max_turns=2", f"output_dir={out}", "max_steps=40", "prompts_per_step=4",
                     "max_new_tokens=12", "max_length=128", "batch_size=32", "logging_steps=5",
                     "device=cpu", *extra, timeout=300)
    assert result.returncode == 0, result.stderr
    records = read_metrics(out)
    curve = [r["reward/mean"] for r in records if "reward/mean" in r]
    assert len(curve) >= 5 and sum(curve[-2:]) / 2 > 1.6 * curve[0], curve
    assert all(r["agent/turns"] == 2.0 for r in records if "agent/turns" in r)  # every episode had both turns
