"""POSTTRAIN_SMOKE=1: the options that drive a run's cost are capped, whatever set them, and said so."""

from __future__ import annotations

import pytest

from posttrain.algorithms.compare import CompareConfig
from posttrain.algorithms.grpo import GRPOConfig
from posttrain.algorithms.sft import SFTConfig
from posttrain.config import load_config
from posttrain.eval.evaluate import EvalConfig
from posttrain.tasks.sources import load_rows


def test_without_the_variable_nothing_changes(monkeypatch, capsys):
    monkeypatch.delenv("POSTTRAIN_SMOKE", raising=False)
    cfg = load_config(SFTConfig, overrides=["max_steps=300"])
    assert cfg.max_steps == 300 and len(load_rows("task:arithmetic")) == 5000
    assert capsys.readouterr().err == ""


def test_caps_given_and_default_values_and_prints_them(monkeypatch, capsys):
    monkeypatch.setenv("POSTTRAIN_SMOKE", "1")
    sft = load_config(SFTConfig, overrides=["max_steps=300", "learning_rate=1e-3"])
    assert (sft.max_steps, sft.learning_rate) == (2, 1e-3)  # only cost is capped
    assert "POSTTRAIN_SMOKE=1 caps SFTConfig: max_steps 300->2" in capsys.readouterr().err
    epochs = load_config(SFTConfig)  # max_steps 0 = "from num_epochs": capped too
    assert epochs.max_steps == 2
    grpo = load_config(GRPOConfig, overrides=["num_generations=8", "max_new_tokens=160"])
    assert (grpo.num_generations, grpo.max_new_tokens) == (4, 96)
    small = load_config(GRPOConfig, overrides=["num_generations=2", "max_new_tokens=8"])
    assert (small.num_generations, small.max_new_tokens) == (2, 8)  # already below the caps
    compare = load_config(CompareConfig, overrides=["best_of_n=[4,16]", "prompts=100"])
    assert (compare.best_of_n, compare.prompts) == ([4], 8)
    evaluation = load_config(EvalConfig)
    assert (evaluation.limit, evaluation.max_new_tokens) == (8, 96)  # 0 = all / the task's default


@pytest.mark.parametrize("source", ["task:arithmetic", "task:sentiment:test"])
def test_reads_the_first_rows_of_every_dataset(monkeypatch, capsys, source):
    monkeypatch.setenv("POSTTRAIN_SMOKE", "1")
    assert len(load_rows(source)) == 64
    assert "reads the first 64 of" in capsys.readouterr().err
