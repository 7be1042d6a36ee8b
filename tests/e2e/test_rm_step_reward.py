"""A step reward model R_φ(o_t, a_t, o_{t+1}) learned by `posttrain rm` from ranked trajectory pairs
(trajectory-level Bradley-Terry), then scoring episodes' `trajectory` column as `step_reward` and as
the cascade's learned tier."""

from __future__ import annotations

import json
import math
import random

import pytest

from conftest import read_metrics, write_jsonl
from posttrain.cli import main
from posttrain.rewards import registry

NAMES = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ivy", "Jo", "Kai", "Lu"]
FIELDS = ["name", "email", "city", "phone"]


def step(rng: random.Random, ok: bool) -> dict:
    """A form-filling step: typing a value into a field (ok), or an action the page rejects."""
    field, value = rng.choice(FIELDS), rng.choice(NAMES)
    if ok:
        return {"observation": f"Page: form [{field}]", "action": f"type({field}, {value})",
                "next_observation": f"Field {field} = {value}"}
    action = rng.choice([f"click({value})", f"open(/{value})", f"save({value}.exe)"])
    return {"observation": f"Page: form [{field}]", "action": action, "next_observation": f"Error: {value} not found"}


def ranked_pairs(n: int, seed: int) -> list[dict]:
    """Pairs of equally long trajectories (1-3 steps); the rejected one has 1-2 steps in the wrong field."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = rng.randint(1, 3)
        wrong = set(rng.sample(range(length), rng.randint(1, min(2, length))))
        rows.append({"chosen_trajectory": [step(rng, True) for _ in range(length)],
                     "rejected_trajectory": [step(rng, t not in wrong) for t in range(length)]})
    return rows


def eval_accuracy(run_dir) -> float:
    return [r for r in read_metrics(run_dir) if "eval_accuracy" in r][-1]["eval_accuracy"]


def test_rm_learns_a_step_reward_from_ranked_trajectories(tiny_llama, tmp_path):
    train, held = ranked_pairs(48, seed=0), ranked_pairs(32, seed=1)
    data = [f"dataset={write_jsonl(tmp_path / 'train.jsonl', train)}", f"eval_dataset={write_jsonl(tmp_path / 'eval.jsonl', held)}",
            "batch_size=8", "lr_scheduler=constant", "logging_steps=1", "device=cpu", "max_length=128", "seed=0"]
    before, out = tmp_path / "before", tmp_path / "run"  # the same initialization, untrained (learning rate 0)
    assert main(["rm", f"model={tiny_llama}", f"output_dir={before}", "max_steps=1", "learning_rate=0", *data]) == 0
    assert main(["rm", f"model={tiny_llama}", f"output_dir={out}", "max_steps=12", "learning_rate=3e-3", *data]) == 0
    print("eval accuracy before", eval_accuracy(before), "after", eval_accuracy(out))
    assert eval_accuracy(before) <= 0.75 and eval_accuracy(out) >= 0.9, (eval_accuracy(before), eval_accuracy(out))
    assert json.loads((out / "final" / "config.json").read_text())["reward_input"] == "trajectory_step"

    # the episodes' `trajectory` column: the trained R_φ summed over steps ranks the held-out pairs
    _, step_reward = registry.build(f"step_reward:path={out / 'final'}")
    episodes = [p["chosen_trajectory"] for p in held] + [p["rejected_trajectory"] for p in held] + [None]
    returns = step_reward(["task"] * len(episodes), ["done"] * len(episodes), trajectory=episodes)
    assert returns[-1] is None
    wins = sum(returns[i] > returns[i + len(held)] for i in range(len(held)))
    assert wins / len(held) >= 0.9

    # the cascade's learned tier reads the same column: σ(Σ_t R_φ) where no rule applies
    _, cascade = registry.build(f"cascade:rule=milestone:model={out / 'final'}")
    got = cascade(["task"] * 2, ["done"] * 2, trajectory=episodes[:2], events=[None, None])
    assert got == pytest.approx([1 / (1 + math.exp(-r)) for r in returns[:2]], abs=1e-5)
