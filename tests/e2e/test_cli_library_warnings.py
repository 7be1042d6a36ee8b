"""A `posttrain` command run end to end: libraries' warnings go to a log file, not its terminal (library_warnings.py)."""

from __future__ import annotations

import transformers

from conftest import run_cli, write_jsonl

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
