"""`posttrain ppo` with a process reward model: a short run logs the process reward at every step."""

from __future__ import annotations

from conftest import read_metrics, write_jsonl
from posttrain.algorithms.ppo import PPOConfig, run_ppo
from posttrain.config import build_config


def test_ppo_run_with_a_process_reward_model(tiny_llama, prm_dir, tmp_path):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Say something {i}:"} for i in range(8)])
    (tmp_path / "rewards.py").write_text("def zero(prompts, completions, **kw):\n    return [0.0] * len(completions)\n")
    config = build_config(PPOConfig, {"model": tiny_llama, "dataset": prompts, "reward_funcs": [f"{tmp_path / 'rewards.py'}:zero"],
                                      "output_dir": str(tmp_path / "run"), "device": "cpu", "process_reward_model": prm_dir,
                                      "max_steps": 2, "prompts_per_step": 4, "max_new_tokens": 8, "max_length": 48,
                                      "batch_size": 4, "num_iterations": 1, "num_minibatches": 1, "logging_steps": 1})
    run_ppo(config)
    records = read_metrics(tmp_path / "run")
    assert len(records) == 2 and all(any("process_reward" in k for k in r) for r in records), records[0].keys()
