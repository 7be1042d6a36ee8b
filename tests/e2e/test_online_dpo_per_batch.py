"""The online_dpo stage end to end on a tiny model: the sampled reward rises; BPO's hard-synced reference
comes back with a resumed run, which ends exactly where the uninterrupted one ends; a bad option is one
line and exit 2. (tests/e2e/test_online_dpo.py is the round-level recipe.)"""

from __future__ import annotations

import pytest
import torch

from conftest import final_weights, read_metrics, without_timing, write_jsonl
from posttrain.algorithms.online_dpo import PRESETS, OnlineDPOConfig, run_online_dpo
from posttrain.cli import main
from posttrain.config import build_config
from posttrain.train.loop import STOP_ENV, STOP_SIGNAL_ENV, Interrupted

LETTER_A = '''
def letter_a(prompts, completions, **columns):
    """The share of characters that are 'a' (the tiny model can learn to write more of them)."""
    return [c.count("a") / max(1, len(c)) for c in completions]
'''


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "rewards.py").write_text(LETTER_A)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Say something {i}:"} for i in range(16)])
    return prompts, f"{tmp_path / 'rewards.py'}:letter_a"


def config(model, setup, out, **values) -> OnlineDPOConfig:
    prompts, reward = setup
    defaults = dict(model=model, dataset=prompts, reward_funcs=[reward], output_dir=str(out), max_steps=2, prompts_per_step=4,
                    max_new_tokens=12, max_length=64, batch_size=8, learning_rate=1e-3, logging_steps=1, device="cpu")
    return build_config(OnlineDPOConfig, {**defaults, **values})


def test_the_reward_of_the_samples_rises(tiny_llama, setup, tmp_path):
    """Two samples per prompt, the one with more 'a's chosen: the share of 'a' grows several-fold in 30 steps
    (measured 0.03 -> 0.2)."""
    run_online_dpo(config(tiny_llama, setup, tmp_path / "run", max_steps=30, prompts_per_step=16, batch_size=32,
                          learning_rate=3e-2, logging_steps=5))
    records = read_metrics(tmp_path / "run")
    curve = [r["reward/mean"] for r in records]
    assert curve[-1] > 3 * curve[0], curve
    assert records[-1]["rewards/accuracies"] > 0.5 and records[-1]["rewards/margins"] > 0  # the implicit reward agrees
    assert 0 < records[0]["pairs/ties"] < 1  # short completions with no 'a' tie: left out, counted


def test_bpo_resumes_with_its_hard_synced_reference(tiny_llama, setup, tmp_path):
    """π_β, the initial reference hard-synced every 3 steps (after steps 3, 6 ...); a run stopped by SIGINT
    after step 4 saves step-4, whose π_β is the policy after step 3, older than the policy; steps 5 and 6
    score against it. The resumed run's weights and metrics equal the uninterrupted run's."""
    values = {**PRESETS["bpo"], "ref_sync_steps": 3, "max_steps": 6, "learning_rate": 1e-2}
    run_online_dpo(config(tiny_llama, setup, tmp_path / "full", **values))
    with pytest.MonkeyPatch.context() as env:
        env.setenv(STOP_ENV, "4")
        env.setenv(STOP_SIGNAL_ENV, "INT")
        with pytest.raises(Interrupted):
            run_online_dpo(config(tiny_llama, setup, tmp_path / "cut", **values))
    run_online_dpo(config(tiny_llama, setup, tmp_path / "cut", resume=True, **values))
    full, cut = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    assert [r["ref_syncs"] for r in full] == [0, 0, 1, 1, 1, 2]
    assert without_timing(cut) == without_timing(full)
    full_weights, cut_weights = final_weights(tmp_path / "full"), final_weights(tmp_path / "cut")
    assert all(torch.equal(full_weights[k], cut_weights[k]) for k in full_weights)


@pytest.mark.parametrize("args, message", [
    (["reference=behaviour", "ref_sync=hard"], "ref_sync=hard updates the reference policy, but with reference=behaviour"),
    (["--preset", "bpo", "lora=true"], "under lora=true the reference is the adapter-disabled base"),
])
def test_a_bad_option_is_one_line_and_exit_2(capsys, args, message):
    assert main(["online_dpo", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
