"""A `posttrain` command run end to end: libraries' warnings go to a log file, not its terminal (library_warnings.py),
and a LoRA run and an online run print our lines only, on a real terminal too."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest
import transformers

from conftest import REPO, preference_rows, run_cli, write_jsonl

# A reward function that does what libraries do mid-run (a Python warning whose source line is in the
# library; a record on transformers' logger, which writes to stderr through its own handler), then fails.
REWARDS = f'''
import warnings

from transformers.utils import logging


def warns_then_raises(prompts, completions, **columns):
    warnings.warn_explicit("`old_name` is deprecated; use `new_name`", FutureWarning, {transformers.__file__!r}, 1)
    logging.get_logger("transformers.modeling_utils").warning("Some weights were not initialized")
    raise RuntimeError("scorer crashed")
'''
ERROR = "posttrain: error: reward function 'warns_then_raises' raised RuntimeError: scorer crashed"


def run_grpo_cli(model, tmp_path, env):
    rewards = tmp_path / "rewards.py"
    rewards.write_text(REWARDS)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Say something {i}:"} for i in range(4)])
    return run_cli("grpo", f"model={model}", f"dataset={prompts}", f"reward_funcs=[{rewards}:warns_then_raises]",
                   f"output_dir={tmp_path / 'run'}", "max_steps=1", "prompts_per_step=2", "num_generations=2",
                   "max_new_tokens=4", "max_length=64", env=env)


def test_the_terminal_gets_our_line_and_the_log_gets_the_warnings(tiny_llama, tmp_path):
    log = tmp_path / "logs" / "warnings.log"
    result = run_grpo_cli(tiny_llama, tmp_path, {"POSTTRAIN_LOG": str(log)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[0].startswith(ERROR), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    text = log.read_text()
    assert "FutureWarning: `old_name` is deprecated; use `new_name`" in text
    assert "[transformers.modeling_utils] WARNING: Some weights were not initialized" in text


def test_posttrain_show_warnings_keeps_them_on_the_terminal(tiny_llama, tmp_path):
    log = tmp_path / "warnings.log"
    result = run_grpo_cli(tiny_llama, tmp_path, {"POSTTRAIN_LOG": str(log), "POSTTRAIN_SHOW_WARNINGS": "1"})
    assert result.returncode == 2, result.stderr
    assert "`old_name` is deprecated" in result.stderr and "Some weights were not initialized" in result.stderr
    assert ERROR in result.stderr and not log.exists()


# What libraries printed on a user's terminal before they were quieted: transformers' bars on every load
# and save, peft reading transformers' deprecated property on every LoRA run, the sampler's old cache keyword.
NOISE = ("Loading weights", "Writing model shards", "is_gradient_checkpointing", "past_key_values", "FutureWarning")


def run_on_terminal(*args: str, env: dict) -> tuple[int, str]:
    """`python -m posttrain ARGS` with stdout and stderr on a pseudo-terminal (progress bars draw only
    where one is): (exit code, everything it wrote)."""
    pty, fcntl, termios = (pytest.importorskip(name) for name in ("pty", "fcntl", "termios"))
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a bar needs a width to draw
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false", **env}
    process = subprocess.Popen([sys.executable, "-m", "posttrain", *args], stdin=subprocess.DEVNULL, stdout=follower,
                               stderr=follower, env=full_env, cwd=REPO)
    os.close(follower)
    written = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the process closed its end
            break
        if not chunk:
            break
        written += chunk
    os.close(leader)
    return process.wait(timeout=300), written.decode("utf-8", errors="replace")


def test_lora_and_online_runs_print_only_our_lines(tiny_llama, tmp_path):
    log = tmp_path / "warnings.log"
    pairs = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(8))
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Say something {i}:"} for i in range(4)])
    runs = {
        "dpo": ["dpo", f"model={tiny_llama}", f"dataset={pairs}", "lora=true", "lora_r=4", "max_steps=2", "batch_size=4",
                "max_length=64", "device=cpu", f"output_dir={tmp_path / 'dpo'}"],
        "grpo": ["grpo", f"model={tiny_llama}", f"dataset={prompts}", "reward_funcs=[format]", "lora=true", "lora_r=4",
                 "max_steps=1", "prompts_per_step=2", "num_generations=2", "max_new_tokens=4", "max_length=64",
                 "device=cpu", f"output_dir={tmp_path / 'grpo'}"],
    }
    for name, args in runs.items():
        code, output = run_on_terminal(*args, env={"POSTTRAIN_LOG": str(log)})
        assert code == 0, output
        assert "posttrain: done" in output, output
        assert [noise for noise in NOISE if noise in output] == [], output
    # The two we fixed where they arise do not reach the log either.
    logged = log.read_text() if log.exists() else ""
    assert "is_gradient_checkpointing" not in logged and "past_key_values" not in logged
