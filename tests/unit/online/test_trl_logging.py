"""TRL's metric names beside ours: each is a name TRL 1.16's GRPOTrainer logs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from posttrain.online.trl_logging import (TRL_NAMES, length_metrics, logged_metrics, take_logged, trl_name, with_trl_names,
                                          write_completions)


def test_every_trl_name_is_one_grpo_trainer_logs():
    spec = importlib.util.find_spec("trl")
    if spec is None:
        pytest.skip("trl is not installed")
    source = (Path(spec.origin).parent / "trainer" / "grpo_trainer.py").read_text(encoding="utf-8")
    for name in TRL_NAMES.values():
        assert f'["{name}"]' in source, name
    assert '[f"rewards/{reward_func_name}/mean"]' in source and '[f"rewards/{reward_func_name}/std"]' in source


def test_names_are_added_beside_ours():
    ours = {"reward/mean": 0.5, "reward/accuracy/mean": 0.25, "reward/accuracy/std": 0.1, "groups/zero_std_fraction": 0.75,
            "kl": 0.01, "monitor/gold/mean": 0.3}
    assert with_trl_names(ours) == ours | {"reward": 0.5, "rewards/accuracy/mean": 0.25, "rewards/accuracy/std": 0.1,
                                           "frac_reward_zero_std": 0.75}
    assert trl_name("reward/accuracy/timeouts") is None and trl_name("monitor/gold/mean") is None


def test_lengths_of_the_terminated_completions():
    assert length_metrics([3, 8, 5, 8], [3, 5]) == {"completion/min_length": 3.0, "completion/mean_terminated_length": 4.0,
                                                    "completion/min_terminated_length": 3.0, "completion/max_terminated_length": 5.0}
    assert length_metrics([8], [])["completion/mean_terminated_length"] == 0.0  # every completion clipped (TRL logs 0 too)


def test_logged_values_become_the_rounds_metric_and_rows(tmp_path):
    class Rewards:
        def pop_logged(self):
            return {"m": [1.0, 2.0]}, {"col": ["a", "b"]}

    log: dict = {}
    samples = [SimpleNamespace(extra={"text": "x"}, reward=1.0), SimpleNamespace(extra={"text": "y"}, reward=None)]
    take_logged(Rewards(), log, ["p1", "p2"], samples)
    assert log["table"] == [{"prompt": "p1", "completion": "x", "reward": 1.0, "col": "a"},
                            {"prompt": "p2", "completion": "y", "reward": None, "col": "b"}]
    other_rank = {"logged": {"m": [6.0]}}
    assert logged_metrics([log, other_rank]) == {"m": 3.0}  # TRL: total / count over every process
    write_completions(str(tmp_path), 4, [log, other_rank])
    rows = [json.loads(line) for line in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert rows == [{"step": 4, **row} for row in log["table"]]
