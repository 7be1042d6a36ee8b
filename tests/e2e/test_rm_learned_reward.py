"""`posttrain rm`'s output as a learned reward: a 2-step run's final/ scores as the hand forward plus the offset
it saved (and without it when offset=false)."""

from __future__ import annotations

import json

import pytest

from conftest import conversations, hand_reward, preference_rows, write_jsonl
from posttrain.rewards.learned import reward_model


def test_posttrain_rm_output_with_its_offset(tiny_llama, tmp_path):
    from posttrain.algorithms.rm import RewardConfig, run_rm
    from posttrain.config import build_config

    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(8, conversational=True))
    run_rm(build_config(RewardConfig, dict(model=tiny_llama, dataset=data, output_dir=str(tmp_path / "rm"), max_steps=2,
                                           batch_size=4, learning_rate=1e-3, max_length=128, device="cpu")))
    final = str(tmp_path / "rm" / "final")
    offset = json.loads((tmp_path / "rm" / "final" / "config.json").read_text())["reward_offset"]
    assert abs(offset) > 1e-6
    prompts, completions = conversations(4, seed=8)
    plain = [hand_reward(final, p, c) for p, c in zip(prompts, completions)]
    assert reward_model(path=final)(prompts, completions) == pytest.approx([r + offset for r in plain], abs=1e-5)
    assert reward_model(path=final, offset=False)(prompts, completions) == pytest.approx(plain, abs=1e-5)
