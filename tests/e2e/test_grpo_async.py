"""Asynchronous rollouts and the prompt curriculum through the GRPO trainer on a tiny model: max_staleness=0
is the synchronous run exactly, the staleness schedule (hand values), the off-policy correction, an
exact resume with a round sampled ahead and a curriculum in the checkpoint, and clear errors."""

from __future__ import annotations

import pytest
import torch

from conftest import final_weights, read_metrics, run_cli, without_timing, write_jsonl
from posttrain.algorithms.grpo import GRPOConfig, run_grpo
from posttrain.config import build_config
from posttrain.errors import UserError
from posttrain.train.loop import STOP_ENV

REWARDS = '''
def letter_a(prompts, completions, **columns):
    return [c.count("a") / max(1, len(c)) for c in completions]

def solved_below_4(prompts, completions, **columns):
    """1 on prompts 0-3 whatever the completion (always solved), else letter_a (never 1.0: never passes 0.5 here)."""
    return [1.0 if int(p.split()[-1].rstrip(":")) < 4 else min(0.4, c.count("a") / max(1, len(c))) for p, c in zip(prompts, completions)]
'''


@pytest.fixture
def setup(tmp_path):
    rewards = tmp_path / "rewards.py"
    rewards.write_text(REWARDS)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Say something {i}:", "level": i % 3} for i in range(8)])
    return prompts, str(rewards)


def config(model, prompts, rewards, out, **values) -> GRPOConfig:
    defaults = dict(model=model, dataset=prompts, reward_funcs=[f"{rewards}:letter_a"], output_dir=str(out),
                    max_steps=4, prompts_per_step=2, num_generations=4, max_new_tokens=8, max_length=48,
                    batch_size=8, learning_rate=1e-3, logging_steps=1, device="cpu")
    return build_config(GRPOConfig, {**defaults, **values})


def test_max_staleness_0_is_the_synchronous_run(tiny_llama, setup, tmp_path):
    prompts, rewards = setup
    run_grpo(config(tiny_llama, prompts, rewards, tmp_path / "sync", max_steps=3))
    run_grpo(config(tiny_llama, prompts, rewards, tmp_path / "async", max_steps=3, async_rollout=True, max_staleness=0))
    sync, asynchronous = read_metrics(tmp_path / "sync"), read_metrics(tmp_path / "async")
    assert [r["async/staleness_max"] for r in asynchronous] == [0.0, 0.0, 0.0]
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith("async/")} for r in without_timing(rs)]  # noqa: E731
    assert strip(asynchronous) == strip(sync)
    a, b = final_weights(tmp_path / "sync"), final_weights(tmp_path / "async")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("staleness, expected", [(1, [0, 1, 1, 2, 1, 2]), (2, [0, 1, 2, 3, 2, 3])])
def test_staleness_follows_the_bound(tiny_llama, setup, tmp_path, staleness, expected):
    """K = 2 steps per round. Round 0 is sampled at version 0 (steps 1-2: 0, 1 steps stale); round r is
    sampled at the first version >= 2r - max_staleness, i.e. 1 (N=1) or 0 (N=2) for round 1, and
    trained at versions 2, 3; round 2 at version 3 (N=1) or 2 (N=2), trained at versions 4, 5."""
    prompts, rewards = setup
    run_grpo(config(tiny_llama, prompts, rewards, tmp_path / "run", max_steps=6, num_minibatches=2, batch_size=4,
                    async_rollout=True, max_staleness=staleness))
    records = read_metrics(tmp_path / "run")
    assert [r["async/staleness_max"] for r in records] == [float(x) for x in expected]
    assert [r["async/staleness_mean"] for r in records] == [float(x) for x in expected]
    # stale samples: the ratio to the sampling policy moves off 1 (the off-policy correction at work)
    assert records[0]["ratio/mean"] == pytest.approx(1.0, abs=1e-4)
    assert abs(records[2]["ratio/mean"] - 1.0) > 1e-5


def test_decoupled_correction_weighs_by_the_trainers_old_policy(tiny_llama, setup, tmp_path):
    """With tis_cap the old log-probs are the trainer's at training time: the first step of a stale
    round is on-policy (ratio 1) and its samples carry the weights min(pi_old / pi_sampler, cap)."""
    prompts, rewards = setup
    run_grpo(config(tiny_llama, prompts, rewards, tmp_path / "run", async_rollout=True, max_staleness=1, tis_cap=2.0))
    records = read_metrics(tmp_path / "run")
    assert records[1]["async/staleness_max"] == 1.0
    assert records[1]["ratio/mean"] == pytest.approx(1.0, abs=1e-4)
    assert records[0]["mismatch/kl"] == pytest.approx(0.0, abs=1e-4) and records[1]["mismatch/k3"] > 1e-6


def test_resume_with_a_round_sampled_ahead_and_a_curriculum(tiny_llama, setup, tmp_path):
    """Killed after step 3, resumed from step-2: the round sampled ahead at step 2 and the curriculum's
    pass rates come from the checkpoint; metrics and weights equal the uninterrupted run's."""
    prompts, rewards = setup
    values = {"max_steps": 5, "save_steps": 2, "async_rollout": True, "max_staleness": 1, "prompt_filter": "solved", "pass_function": "solved_below_4",
              "filter_min_seen": 1, "filter_window": 2, "difficulty_column": "level"}
    run_grpo(config(tiny_llama, prompts, rewards, tmp_path / "full", reward_funcs=[f"{rewards}:solved_below_4"], **values))
    cli = {"model": tiny_llama, "dataset": prompts, "output_dir": tmp_path / "cut", "prompts_per_step": 2, "num_generations": 4,
           "max_new_tokens": 8, "max_length": 48, "batch_size": 8, "learning_rate": 1e-3, "device": "cpu", "logging_steps": 1,
           "reward_funcs": f"[{rewards}:solved_below_4]", **values}
    result = run_cli("grpo", *[f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in cli.items()], env={STOP_ENV: "3"})
    assert result.returncode == -9, result.stderr
    run_grpo(config(tiny_llama, prompts, rewards, tmp_path / "cut", reward_funcs=[f"{rewards}:solved_below_4"], resume=True, **values))
    full, cut = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    assert without_timing(cut) == without_timing(full)
    assert sum(r["curriculum/dropped"] for r in full) > 0 and full[-1]["curriculum/filtered"] > 0
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_settings_are_one_line_errors(tiny_llama, setup, tmp_path):
    prompts, rewards = setup
    with pytest.raises(UserError, match="max_staleness must be >= 0"):
        config(tiny_llama, prompts, rewards, tmp_path, async_rollout=True, max_staleness=-1)
    with pytest.raises(UserError, match="'max_staleness' is set .* only with async_rollout=true"):
        config(tiny_llama, prompts, rewards, tmp_path, max_staleness=3)
    with pytest.raises(UserError, match="filter_min_seen <= filter_window"):
        config(tiny_llama, prompts, rewards, tmp_path, prompt_filter="solved", filter_min_seen=5, filter_window=4)
    with pytest.raises(UserError, match=r"pass_function=nope is not one of the reward functions \(letter_a\)"):
        run_grpo(config(tiny_llama, prompts, rewards, tmp_path / "nope", prompt_filter="both", pass_function="nope", max_steps=1))
    result = run_cli("grpo", f"model={tiny_llama}", f"dataset={prompts}", f"reward_funcs=[{rewards}:letter_a]",
                     f"output_dir={tmp_path / 'run'}", "difficulty_column=nope", "max_steps=1", "max_new_tokens=8", "max_length=48")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "row 0 has no number in column 'nope' (difficulty_column)" in result.stderr
