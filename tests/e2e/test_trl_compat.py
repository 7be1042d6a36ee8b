"""A TRL user's GRPO run, ported unchanged: TRL's YAML keys, `--key value` flags, a reward function
written as TRL's docs write it (trainer_state, log_metric, log_extra; found by TRL's `module.function`
path), and TRL's metric names in metrics.jsonl."""

from __future__ import annotations

import json

from conftest import read_metrics, write_jsonl
from posttrain.cli import main

# As in TRL's docs ("Using trainer_state", "Logging custom metrics" / "extra columns"): keyword names
# exactly as GRPOTrainer passes them.
TRL_REWARDS = '''
import json, os

def reward_len(completions, trainer_state, log_metric, log_extra, **kwargs):
    """Shorter is better (TRL's reward_len example), and what the trainer passed, recorded."""
    with open(os.path.join(os.path.dirname(__file__), "steps.jsonl"), "a") as f:
        f.write(json.dumps([trainer_state.global_step, trainer_state.max_steps]) + "\\n")
    log_metric("seen_global_step", trainer_state.global_step)
    log_extra("length", [len(c) for c in completions])
    return [-abs(20 - len(c)) / 20 for c in completions]
'''

TRL_YAML = """\
model_name_or_path: {model}
dataset_name: {data}
output_dir: {out}
per_device_train_batch_size: 8
num_generations: 4
max_completion_length: 8
learning_rate: 1.0e-4
lr_scheduler_type: constant_with_warmup
warmup_ratio: 0.0
max_steps: 10
logging_steps: 1
save_steps: 0
beta: 0.04
epsilon: 0.2
loss_type: dapo
bf16: false
use_peft: false
gradient_checkpointing: false
seed: 42
reward_funcs: [trl_rewards.reward_len]
logging_strategy: steps
"""


def test_a_trl_grpo_config_runs_unchanged(tiny_llama, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # TRL imports `trl_rewards` from the working directory
    (tmp_path / "trl_rewards.py").write_text(TRL_REWARDS)
    data = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Say something {i}:"} for i in range(8)])
    (tmp_path / "trl.yaml").write_text(TRL_YAML.format(model=tiny_llama, data=data, out=tmp_path / "run"))
    args = ["grpo", "--config", "trl.yaml", "--max_steps", "2", "--per-device-train-batch-size", "16",
            "--prompts_per_step", "4", "--device", "cpu", "--mask_truncated_completions"]
    assert main(args) == 0
    assert "TRL key 'logging_strategy' ignored" in capsys.readouterr().err

    resolved = (tmp_path / "run" / "config.yaml").read_text()
    for line in ("model: " + tiny_llama, "batch_size: 16", "max_new_tokens: 8", "lr_scheduler: constant", "loss_type: token_mean",
                 "epsilon_low: 0.2", "epsilon_high: 0.2", "seed: 42", "max_steps: 2", "mask_truncated: true"):
        assert line in resolved, line
    # one generation round per optimizer step (4 prompts x 4 = 16 samples = one micro-batch), drawn by
    # the policy that had taken 0, then 1 steps: TRL's trainer_state.global_step at generation time
    calls = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert calls == [[0, 2], [1, 2]]
    records = read_metrics(tmp_path / "run")
    assert [r["seen_global_step"] for r in records] == [0.0, 1.0]  # log_metric, under its own name, per round
    for record in records:
        for key in ("reward", "reward_std", "rewards/reward_len/mean", "rewards/reward_len/std", "frac_reward_zero_std",
                    "completions/mean_length", "completions/min_length", "completions/max_length", "completions/clipped_ratio",
                    "completions/mean_terminated_length", "kl", "entropy", "clip_ratio/low_mean", "clip_ratio/high_mean",
                    "clip_ratio/region_mean"):
            assert key in record, key
        assert record["reward"] == record["reward/mean"] and record["completions/clipped_ratio"] == record["completion/truncation_rate"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "completions.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] * 16 + [2] * 16  # log_extra: a column of every completion's row
    assert all(r["length"] == len(r["completion"]) for r in rows)
