"""Two processes take the steps one process takes with their combined batch: GRPO (scale_rewards=batch,
with a monitor function: the reward-hacking diagnostics are taken over every process's samples),
RLOO and PPO (with reward functions, and with a frozen reward model that each process holds half of)
under `torchrun --nproc-per-node 2` (FSDP2, gloo) with prompts_per_step=P each end with
the weights of one process with prompts_per_step=2P, same seed, to float tolerance.

What makes it hold: each prompt's samples come from its own seed (the round and the prompt's row), so
a process sampling its share draws what one process draws for the whole batch; batch statistics
(advantage scaling, whitening, PPO's KL controller) and loss weights are reduced over the processes.
"""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file

from conftest import final_weights, read_metrics, run_cli, say_something_setup
from gloo_processes import run_torchrun
from reward_model_dirs import make_reward_model_dir

REWARDS = '''
def letter_a(prompts, completions, **columns):
    return [c.count("a") / max(1, len(c)) for c in completions]

def letter_e(prompts, completions, **columns):
    return [c.count("e") / max(1, len(c)) for c in completions]
'''

CASES = {
    "grpo": ("grpo", ["scale_rewards=batch", "num_generations=4", "beta=0.05", "monitor_funcs=[{rewards}:letter_e]"]),
    "rloo": ("rloo", ["num_generations=4"]),
    # num_minibatches=1: num_iterations=2 still takes two optimizer steps per round on frozen old log-probs and values
    "ppo": ("ppo", ["num_minibatches=1", "num_iterations=2", "kl_coef=0.05"]),
    # PPO's defaults (num_minibatches=2, num_iterations=4): each process cuts its samples into contiguous
    # minibatches and every process visits them in the same seeded order (OnlineSource._plan)
    "ppo_minibatches": ("ppo", ["kl_coef=0.05"]),
    # a reward model instead of reward_funcs: frozen, so each process holds half of it (shard_frozen);
    # the critic starts from its score head
    "ppo_reward_model": ("ppo", ["num_minibatches=1", "kl_coef=0.05", "reward_model={rm}"]),
}


@pytest.fixture
def setup(tmp_path):
    return say_something_setup(tmp_path, REWARDS)


@pytest.mark.parametrize("case", CASES)
def test_two_processes_take_the_steps_of_one_with_the_combined_batch(tiny_llama, setup, tmp_path, case):
    prompts, rewards = setup
    stage, extra = CASES[case]
    rm = make_reward_model_dir(tmp_path / "rm", seed=5) if case == "ppo_reward_model" else None
    extra = [arg.format(rewards=rewards, rm=rm) for arg in extra]
    scored_by = [] if rm else [f"reward_funcs=[{rewards}:letter_a]"]
    per_process = 2
    args = [f"model={tiny_llama}", f"dataset={prompts}", *scored_by, "max_steps=3",
            "max_new_tokens=8", "max_length=64", "batch_size=4", "learning_rate=1e-2", "logging_steps=1",
            "device=cpu", "seed=3", *extra]
    one = run_cli(stage, *args, f"output_dir={tmp_path / 'one'}", f"prompts_per_step={2 * per_process}")
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_torchrun(stage, dict(arg.split("=", 1) for arg in args) | {"output_dir": tmp_path / "two", "prompts_per_step": per_process})
    if two.returncode != 0:
        pytest.fail(two.stderr[-3000:])

    assert [r["step"] for r in read_metrics(tmp_path / "two")] == [1, 2, 3]
    for a, b in zip(read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6), (a, b)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4), (a, b)
        assert a.keys() == b.keys()
        for key in ("reward/mean", "reward/std", "completion/mean_length", "advantage/mean", "advantage/abs_mean",
                    "values/mean", "kl_coef", "entropy", "reward/letter_a/at_max", "reward/letter_a/jump_z",
                    "monitor/letter_e/mean", "monitor/letter_e/at_max", "monitor/letter_e/gap", "monitor/letter_e/correlation"):
            if key in a:  # a step that made a round's experience, or with the key's part
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (key, a[key], b[key])  # over every process
    if case == "grpo":  # the diagnostics were there to compare
        assert all("monitor/letter_e/gap" in r and "reward/letter_a/at_max" in r for r in read_metrics(tmp_path / "two"))
    before = load_file(os.path.join(tiny_llama, "model.safetensors"))
    alone, shared = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    assert max(float((alone[k] - before[k]).abs().max()) for k in before) > 1e-2  # the policy moved 100x the tolerance
    for name in before:
        torch.testing.assert_close(shared[name], alone[name], rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}")
