"""SIGTERM during a GRPO run (as a scheduler's preemption sends it, from another process, at whatever
step the run is in): the step finishes, a checkpoint is saved, the CLI exits 143 with one line, and
resume=true ends exactly where the uninterrupted run ends (the pattern of test_grpo.py's
test_resume_ends_where_the_uninterrupted_run_ends, with a signal instead of SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch

from conftest import REPO, final_weights, read_metrics, without_timing, write_jsonl
from posttrain.algorithms.grpo import GRPOConfig, run_grpo
from posttrain.config import build_config

REWARD = '''
def letter_a(prompts, completions, **columns):
    return [c.count("a") / max(1, len(c)) for c in completions]
'''


def test_sigterm_saves_a_checkpoint_and_resume_ends_where_the_uninterrupted_run_ends(tmp_path, tiny_llama):
    (tmp_path / "rewards.py").write_text(REWARD)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Say something {i}:"} for i in range(16)])
    values = {"model": tiny_llama, "dataset": prompts, "reward_funcs": [f"{tmp_path / 'rewards.py'}:letter_a"], "max_steps": 6,
              "num_iterations": 2, "prompts_per_step": 4, "num_generations": 4, "max_new_tokens": 12, "max_length": 64,
              "batch_size": 8, "learning_rate": 1e-3, "logging_steps": 1, "save_steps": 0, "device": "cpu"}
    run_grpo(build_config(GRPOConfig, {**values, "output_dir": str(tmp_path / "full")}))

    cut = tmp_path / "cut"
    args = [f"{k}={v}" for k, v in values.items() if k != "reward_funcs"] + [f"reward_funcs=[{values['reward_funcs'][0]}]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen([sys.executable, "-m", "posttrain", "grpo", *args, f"output_dir={cut}"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not read_metrics(cut) and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    [checkpoint] = (cut / "checkpoints").iterdir()
    step = int(checkpoint.name.removeprefix("step-"))
    assert stderr.splitlines()[-1] == (f"posttrain: stopped by SIGTERM after step {step} of 6; saved {checkpoint}: "
                                       "run the same command with resume=true to continue")
    assert 1 <= step < 6 and read_metrics(cut)[-1]["step"] == step and not (cut / "final").exists()

    run_grpo(build_config(GRPOConfig, {**values, "output_dir": str(cut), "resume": True}))
    full, resumed = read_metrics(tmp_path / "full"), read_metrics(cut)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert without_timing(resumed) == without_timing(full)
    a, b = final_weights(tmp_path / "full"), final_weights(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
