"""`step_reward` (rewards/learned.py): an episode's Σ_t R_φ(o_t, a_t, o_{t+1}) from its `trajectory` column,
equal to the score head read by hand on each step's conversation; and the guards between completion and
step reward models."""

from __future__ import annotations

import json

import pytest

from conftest import hand_reward
from reward_model_dirs import make_reward_model_dir
from posttrain.errors import ConfigError, DataError, UserError
from posttrain.rewards import registry

STEPS = [{"observation": "Page: form [name]", "action": "type(name, Ada)", "next_observation": "Field name = Ada"},
         {"observation": "Page: form [email]", "action": "click(Cancel)", "next_observation": "Error: form closed"},
         {"observation": "Page: done", "action": "save(a.csv)", "next_observation": "File a.csv created"}]


def make_rm(path, step_model: bool) -> str:
    make_reward_model_dir(path, "qwen2", seed=1)
    if step_model:  # what `posttrain rm` writes after training on trajectory pairs
        data = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**data, "reward_input": "trajectory_step"}))
    return str(path)


def test_episode_return_is_the_sum_of_hand_scored_steps(tmp_path):
    path = make_rm(tmp_path / "step", step_model=True)
    _, score = registry.build(f"step_reward:path={path}")
    per_step = [hand_reward(path, [{"role": "user", "content": s["observation"]}],
                            [{"role": "assistant", "content": s["action"]}, {"role": "user", "content": s["next_observation"]}])
                for s in STEPS]
    episodes = [STEPS, json.dumps(STEPS[1:]), None, STEPS[:1]]  # a cell may be JSON text; None: no episode
    got = score(["p"] * 4, ["c"] * 4, trajectory=episodes)
    assert got[0] == pytest.approx(sum(per_step), abs=1e-5) and got[1] == pytest.approx(per_step[1] + per_step[2], abs=1e-5)
    assert got[2] is None and got[3] == pytest.approx(per_step[0], abs=1e-5)
    assert len({round(v, 4) for v in per_step}) == 3  # the steps really score differently
    with pytest.raises(UserError, match="reads each episode's steps from column 'trajectory'"):
        score(["p"], ["c"], events=[[]])
    with pytest.raises(DataError, match="step 0: 'action' must be a string"):
        score(["p"], ["c"], trajectory=[[{"observation": "o", "next_observation": "n"}]])


def test_step_and_completion_reward_models_are_not_mixed_up(tmp_path):
    step, plain = make_rm(tmp_path / "step", True), make_rm(tmp_path / "plain", False)
    with pytest.raises(ConfigError, match="is a step reward model .* step_reward:path="):
        registry.build(f"reward_model:path={step}")
    with pytest.raises(ConfigError, match="was not trained on trajectory pairs"):
        registry.build(f"step_reward:path={plain}")
