"""GRPO / RLOO training end to end on a tiny model: metrics, failure behaviour, dynamic sampling,
prompts that do not fit, exact resume, and learning a simple reward."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import arithmetic_prompts_file, final_weights, read_metrics, run_cli, say_something_setup, warning_lines, without_timing, write_jsonl
from posttrain.algorithms.grpo import GRPOConfig, run_grpo
from posttrain.config import build_config
from posttrain.errors import UserError
from posttrain.train.loop import STOP_ENV

REWARDS = '''
def letter_a(prompts, completions, **columns):
    """The share of characters that are 'a' (the tiny model can learn to write more of them)."""
    return [c.count("a") / max(1, len(c)) for c in completions]

def constant(prompts, completions, **columns):
    return [1.0 for _ in completions]

def raises(prompts, completions, **columns):
    raise RuntimeError("scorer crashed")

def not_finite(prompts, completions, **columns):
    return [float("nan") for _ in completions]

def too_few(prompts, completions, **columns):
    return [0.0]

def letter_a_on_odd_prompts(prompts, completions, **columns):
    """letter_a on "Say something 1:", 3, 5, ...; a flat 0 on the even ones (groups dynamic sampling drops)."""
    return [c.count("a") / max(1, len(c)) if int(p.rstrip(":").split()[-1]) % 2 else 0.0 for p, c in zip(prompts, completions)]
'''


@pytest.fixture
def setup(tmp_path):
    return say_something_setup(tmp_path, REWARDS)


def grpo_config(model, prompts, rewards, out, config_class=GRPOConfig, **values) -> GRPOConfig:
    defaults = dict(model=model, dataset=prompts, reward_funcs=[f"{rewards}:letter_a"], output_dir=str(out),
                    max_steps=2, prompts_per_step=4, num_generations=4, max_new_tokens=12, max_length=64,
                    batch_size=8, learning_rate=1e-3, logging_steps=1, device="cpu")
    return build_config(config_class, {**defaults, **values})


def test_metrics_users_need_are_logged(tiny_llama, setup, tmp_path):
    prompts, rewards = setup
    run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / "run", beta=0.05))
    first = read_metrics(tmp_path / "run")[0]
    for key in ("loss", "reward/mean", "reward/std", "reward/letter_a/mean", "kl/k1", "kl/k3", "kl", "entropy",
                "completion/mean_length", "completion/max_length", "completion/truncation_rate", "clip_ratio/low",
                "clip_ratio/high", "clip_ratio/region", "groups/zero_std_fraction", "advantage/std",
                "rollout/tokens_per_second", "time/rollout_seconds", "time/reference_seconds", "tokens_per_second"):
        assert key in first, key
    # on-policy at the first step: the policy's log-probs are the sampler's, every ratio is 1, KL is 0
    assert first["ratio/mean"] == pytest.approx(1.0, abs=1e-4)
    assert first["kl/k3"] == pytest.approx(0.0, abs=1e-6)
    assert first["clip_ratio/region"] == 0.0
    assert math.isfinite(first["loss"]) and abs(first["loss"]) < 1e-3  # ≈ 0 by construction (see --help)


def test_gradient_checkpointing_gives_the_gradients_of_the_plain_run(tiny_llama, setup, tmp_path):
    """With checkpointing the layers recompute in backward: the run pads instead of packing (whose
    attention is switched on only around the forward), and takes the same steps as without it."""
    prompts, rewards = setup
    plain = run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / "plain", packing=False))
    checkpointed = run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / "gc", gradient_checkpointing=True))
    assert checkpointed["loss"] == pytest.approx(plain["loss"], rel=1e-4, abs=1e-7)
    assert checkpointed["grad_norm"] == pytest.approx(plain["grad_norm"], rel=1e-4)


def test_all_equal_rewards_divide_by_nothing(tiny_llama, setup, tmp_path):
    prompts, rewards = setup
    run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / "run", reward_funcs=[f"{rewards}:constant"]))
    first = read_metrics(tmp_path / "run")[0]
    assert first["groups/zero_std_fraction"] == 1.0
    assert first["advantage/abs_mean"] == 0.0 and first["grad_norm"] == 0.0 and first["loss"] == 0.0


@pytest.mark.parametrize("stage", ["grpo", "rloo"])
def test_ptx_term_is_the_whole_loss_when_the_rewards_are_flat(tiny_llama, setup, tmp_path, stage):
    """PPO-ptx in GRPO / RLOO: with a constant reward every advantage is 0, so the logged loss is exactly
    γ × ptx_loss (one micro-batch a step), the gradient is the SFT loss's and the SFT data's loss falls."""
    from conftest import sft_rows
    from posttrain.algorithms.grpo import RLOOConfig, run_rloo

    prompts, rewards = setup
    sft = write_jsonl(tmp_path / "sft.jsonl", sft_rows(8))
    values = dict(reward_funcs=[f"{rewards}:constant"], ptx_coef=0.5, ptx_dataset=sft, max_steps=4, batch_size=16)
    config_class, run = (GRPOConfig, run_grpo) if stage == "grpo" else (RLOOConfig, run_rloo)
    run(grpo_config(tiny_llama, prompts, rewards, tmp_path / "run", config_class, **values))
    records = read_metrics(tmp_path / "run")
    assert all(r["advantage/abs_mean"] == 0.0 and r["grad_norm"] > 0 for r in records)
    assert all(r["loss"] == pytest.approx(0.5 * r["ptx_loss"], rel=1e-5) for r in records)
    assert records[-1]["ptx_loss"] < records[0]["ptx_loss"]  # the next-token loss on the SFT data falls


def test_dynamic_sampling_drops_flat_groups_up_to_its_cap(tiny_llama, setup, tmp_path):
    prompts, rewards = setup
    run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / "run", reward_funcs=[f"{rewards}:constant"],
                         dynamic_sampling=True, max_sampling_rounds=3, max_steps=1))
    first = read_metrics(tmp_path / "run")[0]
    assert first["sampling_rounds"] == 3.0
    assert first["groups/dropped"] == 12.0  # 4 prompts x 3 rounds, all flat
    assert first["groups/filled_after_cap"] == 4.0  # the step still has its 4 groups


@pytest.mark.parametrize("function, message", [
    ("raises", "reward function 'raises' raised RuntimeError: scorer crashed"),
    ("not_finite", "reward function 'not_finite' returned nan for completion 0"),
    ("too_few", "returned 1 values for 16 completions"),
])
def test_bad_reward_functions_are_one_line_exit_2(tiny_llama, setup, tmp_path, function, message):
    prompts, rewards = setup
    result = run_cli("grpo", f"model={tiny_llama}", f"dataset={prompts}", f"reward_funcs=[{rewards}:{function}]",
                     f"output_dir={tmp_path / 'run'}", "max_steps=1", "prompts_per_step=4", "num_generations=4",
                     "max_new_tokens=8", "max_length=64")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "run" / "final").exists()


def test_masked_rewards_are_counted_and_left_out(tiny_llama, setup, tmp_path):
    prompts, rewards = setup
    run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / "run", reward_funcs=[f"{rewards}:raises"],
                         reward_errors="mask", max_steps=1))
    first = read_metrics(tmp_path / "run")[0]
    assert first["samples/masked"] == 16.0 and first["grad_norm"] == 0.0


def test_prompts_longer_than_the_context_are_skipped_and_counted(tiny_llama, tmp_path, setup):
    _, rewards = setup
    rows = [{"prompt": "word " * 80}] * 2 + [{"prompt": f"Say {i}:"} for i in range(6)]
    prompts = write_jsonl(tmp_path / "long.jsonl", rows)
    run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / "run", max_steps=1, prompts_per_step=8,
                         max_sampling_rounds=1))
    first = read_metrics(tmp_path / "run")[0]
    assert first["prompts/too_long"] >= 1.0


def test_impossible_settings_are_clear_errors(tiny_llama, setup, tmp_path):
    prompts, rewards = setup
    with pytest.raises(UserError, match="num_generations must be >= 2"):
        grpo_config(tiny_llama, prompts, rewards, tmp_path, num_generations=1)
    with pytest.raises(UserError, match="lower num_minibatches"):
        grpo_config(tiny_llama, prompts, rewards, tmp_path, num_minibatches=64)
    with pytest.raises(UserError, match="max_new_tokens"):
        grpo_config(tiny_llama, prompts, rewards, tmp_path, max_new_tokens=64)


@pytest.mark.parametrize("extra", [{}, {"dynamic_sampling": True, "beta": 0.04, "num_minibatches": 2, "batch_size": 4,
                                       "reward_funcs": "letter_a_on_odd_prompts"}], ids=["grpo", "dynamic-sampling-beta"])
def test_resume_ends_where_the_uninterrupted_run_ends(tiny_llama, setup, tmp_path, extra):
    """SIGKILL after step 4 of 6 with checkpoints every 3 steps: the run resumes from step-3, in the middle of
    a round (μ = 2 passes over the round's samples), so the round's samples and the plan of its remaining
    optimizer steps come from the checkpoint; the next round samples from the restored prompt cursor and
    round counter. Weights are torch.equal and the metrics lines equal (timings aside) to the run never
    killed. The second case drops flat groups (dynamic sampling moves the cursor by a varying amount),
    scores a reference (β > 0) and shuffles the samples into 2 minibatches of 2 micro-batches each."""
    prompts, rewards = setup
    values = {"max_steps": 6, "num_iterations": 2, "save_steps": 3, "logging_steps": 2, **extra}
    values["reward_funcs"] = [f"{rewards}:{values.get('reward_funcs', 'letter_a')}"]
    run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / "full", **values))
    cli = {"model": tiny_llama, "dataset": prompts, "output_dir": tmp_path / "cut", "prompts_per_step": 4, "num_generations": 4,
           "max_new_tokens": 12, "max_length": 64, "batch_size": 8, "learning_rate": 1e-3, "device": "cpu",
           **values, "reward_funcs": f"[{values['reward_funcs'][0]}]"}
    args = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in cli.items()]
    result = run_cli("grpo", *args, env={STOP_ENV: "4"})
    assert result.returncode == -9, result.stderr
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()) == ["step-3"]
    run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / "cut", resume=True, **values))
    full, cut = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    assert [r["step"] for r in cut] == [2, 4, 6]
    assert without_timing(cut) == without_timing(full)
    if extra:
        assert sum(r.get("groups/dropped", 0) for r in full) > 0 and full[-1]["kl/k3"] > 0
    full_weights, cut_weights = final_weights(tmp_path / "full"), final_weights(tmp_path / "cut")
    assert full_weights.keys() == cut_weights.keys()
    assert all(torch.equal(full_weights[k], cut_weights[k]) for k in full_weights)


def test_rloo_cli_learns_a_simple_reward(tiny_llama, setup, tmp_path):
    prompts, rewards = setup
    out = tmp_path / "rloo"
    result = run_cli("rloo", f"model={tiny_llama}", f"dataset={prompts}", f"reward_funcs=[{rewards}:letter_a]",
                     f"output_dir={out}", "max_steps=30", "prompts_per_step=4", "num_generations=8",
                     "max_new_tokens=12", "max_length=64", "batch_size=32", "learning_rate=3e-3",
                     "logging_steps=5", "device=cpu", timeout=300)
    assert result.returncode == 0, result.stderr
    curve = [m["reward/mean"] for m in read_metrics(out)]
    assert sum(curve[-2:]) / 2 > 1.6 * curve[0], curve  # the share of 'a' grows (about doubles in 30 steps)


@pytest.mark.parametrize("preset", ["grpo", "dapo", "dr_grpo", "gspo", "grpo_plus", "rloo", "reinforce", "reinforce_pp", "remax"])
def test_every_preset_trains(tiny_llama, setup, tmp_path, preset):
    from posttrain.algorithms.grpo import PRESETS

    prompts, rewards = setup
    values = {**PRESETS[preset], "overlong_buffer": min(PRESETS[preset].get("overlong_buffer", 0), 4)}
    before = final_weights_of(tiny_llama)
    run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / "run", max_steps=2, max_sampling_rounds=2, **values))
    records = read_metrics(tmp_path / "run")
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in records)
    after = final_weights(tmp_path / "run")
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the policy moved


def final_weights_of(model_dir) -> dict:
    from transformers import AutoModelForCausalLM

    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(model_dir).state_dict().items()}


def test_held_out_eval_by_generation_is_logged(tiny_llama, setup, tmp_path):
    prompts, rewards = setup
    held_out = write_jsonl(tmp_path / "held_out.jsonl", [{"prompt": f"Write {i}:"} for i in range(5)])
    last = run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / "run", eval_dataset=held_out, eval_steps=1))
    records = read_metrics(tmp_path / "run")
    assert all("eval_letter_a" in r and 0.0 <= r["eval_letter_a"] <= 1.0 for r in records)
    assert last["eval_mean_length"] > 0


@pytest.mark.parametrize("stage, extra", [("grpo", ["beta=0.05"]), ("ppo", ["num_generations=2", "kl_coef=0.05"]),
                                          ("online_dpo", ["ref_sync=hard", "ref_sync_steps=2"])])
def test_online_trainers_run_under_fsdp2(tiny_llama, setup, tmp_path, stage, extra):
    """Two processes: each samples from its own full copy of the policy (refreshed from the shards every
    round), trains its share under FSDP2, and rank 0 writes a plain final/ (PPO: without the value head;
    online DPO: its reference hard-synced from the shards every 2 steps)."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    from conftest import REPO

    prompts, rewards = setup
    out = tmp_path / stage
    args = [f"model={tiny_llama}", f"dataset={prompts}", f"reward_funcs=[{rewards}:letter_a]", f"output_dir={out}",
            "max_steps=4", "prompts_per_step=2", "max_new_tokens=8", "max_length=64", "batch_size=4", "device=cpu",
            "logging_steps=1", "learning_rate=1e-3", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "posttrain", stage, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_metrics(out)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss"]) for r in records)
    assert not any("v_head" in k for k in load_file(out / "final" / "model.safetensors"))


def test_entropy_bonus_and_the_sequence_product_ratio_through_the_trainer(tiny_llama, setup, tmp_path):
    """entropy_coef subtracts β_H × the policy's token-mean entropy from the token_mean loss of the same
    first step (same seed, same rollouts); ratio_level=sequence_product trains."""
    prompts, rewards = setup
    runs = {}
    for name, extra in {"plain": {}, "bonus": {"entropy_coef": 0.5}}.items():
        run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / name, max_steps=1, loss_type="token_mean", **extra))
        runs[name] = read_metrics(tmp_path / name)[0]
    plain, bonus = runs["plain"], runs["bonus"]
    assert bonus["entropy"] == pytest.approx(plain["entropy"], rel=1e-6) and plain["entropy"] > 0
    assert bonus["loss"] - plain["loss"] == pytest.approx(-0.5 * plain["entropy"], rel=1e-4)
    run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / "product", ratio_level="sequence_product", beta=0.05))
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in read_metrics(tmp_path / "product"))


def test_the_entropy_bonus_reaches_the_gradient(tiny_llama, setup, tmp_path):
    """With entropy_coef > 0 the entropy is trained on, not only logged: the first step's gradient changes."""
    prompts, rewards = setup
    norms = {}
    for name, coef in {"plain": 0.0, "bonus": 5.0}.items():
        run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / name, max_steps=1, loss_type="token_mean", entropy_coef=coef))
        norms[name] = read_metrics(tmp_path / name)[0]["grad_norm"]
    assert norms["bonus"] != pytest.approx(norms["plain"], rel=1e-3)


def test_truncated_importance_sampling_logs_the_rollout_trainer_mismatch(tiny_llama, setup, tmp_path):
    """tis_cap > 0: the trainer recomputes the old log-probs; against the local sampler (the same
    weights, a KV-cached forward) the mismatch is float noise, the weights are ~1 and training goes on."""
    prompts, rewards = setup
    run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / "run", max_steps=2, tis_cap=2.0))
    records = read_metrics(tmp_path / "run")
    first = records[0]
    assert abs(first["mismatch/kl"]) < 1e-4 and first["mismatch/k3"] < 1e-6 and first["mismatch/tis_capped_fraction"] == 0
    assert first["ratio/mean"] == pytest.approx(1.0, abs=1e-4)
    assert all(math.isfinite(r["loss"]) for r in records)


def test_remax_baseline_is_the_greedy_completions_reward(tiny_llama, setup, tmp_path):
    """ReMax: one greedy rollout per prompt is scored and subtracted; with G = 1 the advantages are not
    identically 0 (GRPO's would be) and the policy trains."""
    prompts, rewards = setup
    run_grpo(grpo_config(tiny_llama, prompts, rewards, tmp_path / "run", max_steps=2, advantage="remax", num_generations=1,
                         temperature=1.5))
    records = read_metrics(tmp_path / "run")
    assert records[0]["advantage/abs_mean"] > 0 and all(math.isfinite(r["grad_norm"]) for r in records)


def test_plain_string_prompts_to_a_chat_model_warn_once(tmp_path):
    """The embedded chat model answers plain-string questions with nothing: one warning over two rounds."""
    prompts = arithmetic_prompts_file(tmp_path / "prompts.jsonl", as_messages=False)
    result = run_cli("grpo", "model=embedded", f"dataset={prompts}", "reward_funcs=[task:arithmetic:accuracy]",
                     f"output_dir={tmp_path / 'run'}", "max_steps=2", "prompts_per_step=2", "num_generations=2",
                     "max_new_tokens=16", "batch_size=4", "device=cpu")
    assert result.returncode == 0, result.stderr
    warnings = warning_lines(result.stderr)
    assert len(warnings) == 1 and "plain strings" in warnings[0] and "message list" in warnings[0], result.stderr
    assert all(r["completion/mean_length"] == 1.0 for r in read_metrics(tmp_path / "run") if "completion/mean_length" in r)
