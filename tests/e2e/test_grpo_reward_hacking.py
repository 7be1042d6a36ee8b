"""GRPO's reward-hacking diagnostics and reward timeouts end to end on a tiny model: the share at the
maximum, jumps and the proxy-vs-gold gap of monitor_funcs in metrics.jsonl and in the report; a reward
function that sleeps past reward_timeout is abandoned and counted, and three such calls in a row stop
the run with one line (exit 2)."""

from __future__ import annotations

import time

import pytest

from conftest import read_metrics, run_cli, say_something_setup, write_jsonl
from posttrain.algorithms.grpo import GRPOConfig, run_grpo
from posttrain.config import build_config
from posttrain.errors import UserError
from posttrain.report import write_report

REWARDS = '''
import time

def letter_a(prompts, completions, **columns):
    """The share of characters that are 'a'."""
    return [c.count("a") / max(1, len(c)) for c in completions]

letter_a.reward_range = (0.0, 1.0)

def short(prompts, completions, **columns):
    """The gold: 1 for an empty completion, 0 from 40 characters on."""
    return [1.0 - min(len(c), 40) / 40 for c in completions]

short.reward_range = (0.0, 1.0)

def count_e(prompts, completions, **columns):
    """No declared range: its maximum is the largest value seen so far."""
    return [float(c.count("e")) for c in completions]

CALLS = []

def slow_first_call(prompts, completions, **columns):
    """Sleeps 5 s on its first call only (past a 1 s reward_timeout), then answers at once."""
    CALLS.append(1)
    if len(CALLS) == 1:
        time.sleep(5)
    return [0.5 for _ in completions]

def hangs(prompts, completions, **columns):
    time.sleep(60)
    return [1.0 for _ in completions]

def hangs_on_held_out(prompts, completions, **columns):
    if any(p.startswith("Held out") for p in prompts):
        time.sleep(5)
    return [0.5 for _ in completions]
'''


@pytest.fixture
def setup(tmp_path):
    return say_something_setup(tmp_path, REWARDS, "hacking_rewards.py")


def grpo_config(model, prompts, out, **values) -> GRPOConfig:
    defaults = dict(model=model, dataset=prompts, output_dir=str(out), max_steps=3, prompts_per_step=4, num_generations=4,
                    max_new_tokens=12, max_length=64, batch_size=16, learning_rate=1e-3, logging_steps=1, device="cpu")
    return build_config(GRPOConfig, {**defaults, **values})


def test_monitor_funcs_log_the_gap_and_the_report_shows_the_panel(tiny_llama, setup, tmp_path):
    prompts, rewards = setup
    run_grpo(grpo_config(tiny_llama, prompts, tmp_path / "run", reward_funcs=[f"{rewards}:letter_a"],
                         monitor_funcs=[f"{rewards}:short", f"{rewards}:count_e"]))
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2, 3]  # one round per step
    for r in records:
        for prefix in ("reward/letter_a", "monitor/short", "monitor/count_e"):
            assert 0.0 <= r[f"{prefix}/at_max"] <= 1.0
            assert r[f"{prefix}/jump"] == 0.0 and r[f"{prefix}/jump_z"] == 0.0  # under 5 rounds of history: no verdict
            assert r[f"{prefix}/timeouts"] == 0.0
            assert f"{prefix}/mean" in r and f"{prefix}/std" in r
        assert r["monitor/count_e/at_max"] > 0.0  # its own largest value so far is always reached by someone
        for name in ("short", "count_e"):
            assert r[f"monitor/{name}/gap"] == pytest.approx(r[f"monitor/{name}/proxy"] - r[f"monitor/{name}/gold"])
            assert -1.0 <= r.get(f"monitor/{name}/correlation", 0.0) <= 1.0
        # proxy and gold are on 0..1 where declared (letter_a, short); every sample has both, so the
        # proxy is the trained reward's mean and the gold the monitor's
        assert r["monitor/short/proxy"] == pytest.approx(r["reward/mean"])
        assert r["monitor/short/gold"] == pytest.approx(r["monitor/short/mean"])
        assert 0.0 <= r["monitor/short/gold"] <= 1.0
        assert r["monitor/count_e/gold"] == pytest.approx(r["monitor/count_e/mean"])  # undeclared: its own units
        assert "reward/total/at_max" not in r and "monitor/letter_a/at_max" not in r
    assert any("monitor/short/correlation" in r for r in records)  # 16 varied samples: defined on some round

    html = write_report(tmp_path / "run").read_text(encoding="utf-8")
    assert '<section id="reward-hacking"><h2>Reward hacking</h2>' in html
    assert 'alt="run: share at max"' in html and 'alt="run: proxy vs gold: short"' in html
    assert "No sudden jumps." in html


def test_a_reward_call_past_reward_timeout_is_abandoned_and_counted(tiny_llama, setup, tmp_path):
    prompts, rewards = setup
    began = time.monotonic()
    run_grpo(grpo_config(tiny_llama, prompts, tmp_path / "run", reward_funcs=[f"{rewards}:slow_first_call"],
                         monitor_funcs=[f"{rewards}:short"], reward_timeout=1.0))
    assert time.monotonic() - began < 60
    first, *rest = read_metrics(tmp_path / "run")
    assert first["reward/slow_first_call/timeouts"] == 1.0 and first["monitor/short/timeouts"] == 0.0
    assert first["samples/masked"] == 16.0 and first["grad_norm"] == 0.0  # no reward: None, as a function that does not apply
    assert "reward/slow_first_call/at_max" not in first  # no value this round
    assert "monitor/short/gap" not in first  # no pair of trained reward and gold
    assert [r["reward/slow_first_call/timeouts"] for r in rest] == [0.0, 0.0]
    assert all(r["samples/masked"] == 0.0 and r["reward/slow_first_call/mean"] == 0.5 for r in rest)


def test_timeouts_in_a_row_stop_the_run_with_one_line(tiny_llama, setup, tmp_path):
    prompts, rewards = setup
    began = time.monotonic()
    result = run_cli("grpo", f"model={tiny_llama}", f"dataset={prompts}", f"reward_funcs=[{rewards}:hangs]",
                     f"output_dir={tmp_path / 'run'}", "max_steps=5", "prompts_per_step=4", "num_generations=4",
                     "max_new_tokens=8", "max_length=64", "reward_timeout=0.5")
    assert time.monotonic() - began < 60  # abandoned, never waited for: each call sleeps 60 s
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "reward function 'hangs' timed out on 3 calls in a row (reward_timeout=0.5 s each)" in lines[0]
    assert not (tmp_path / "run" / "final").exists()


def test_held_out_scoring_past_reward_timeout_stops_the_run_instead_of_hanging(tiny_llama, setup, tmp_path):
    prompts, rewards = setup
    held_out = write_jsonl(tmp_path / "held_out.jsonl", [{"prompt": f"Held out {i}:"} for i in range(2)])
    config = grpo_config(tiny_llama, prompts, tmp_path / "run", reward_funcs=[f"{rewards}:hangs_on_held_out"], max_steps=1,
                         eval_dataset=held_out, eval_steps=1, reward_timeout=1.0)
    with pytest.raises(UserError, match=r"scoring function 'hangs_on_held_out' raised TimeoutError: no answer within "
                                        r"reward_timeout=1 s \(held-out evaluation\)"):
        run_grpo(config)
