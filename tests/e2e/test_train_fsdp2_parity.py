"""Two processes under `torchrun --nproc-per-node 2` (FSDP2, gloo, CPU) take the steps of one process
reading the combined batch: the reward model (pairs and K-wise rankings, with center_rewards), the
process reward model and DPO (sigmoid with a frozen copy as π_ref, and TR-DPO's soft reference updates)
log the same loss and grad_norm at every step and end with the same weights, to float tolerance.

The single-process run is the reference: it is the arithmetic every unit test of these losses checks,
and the two-process run must reproduce it from per-rank shares of each step (FSDP averages gradients;
the loop divides the summed loss by the weight summed over ranks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import preference_rows, ranking_rows, read_metrics, write_jsonl
from prm_data import stepwise_rows
from gloo_processes import run_torchrun

TRAINING = dict(max_length=128, learning_rate=1e-2, lr_scheduler="cosine", warmup_steps=1, logging_steps=1,
                device="cpu", seed=5, max_steps=4, eval_steps=4, gradient_accumulation_steps=2)


def run_both(stage: str, values: dict, per_rank: int, tmp_path: Path) -> tuple[Path, Path]:
    """The stage in one process with batch_size 2 x per_rank, and in two with per_rank each."""
    one, two = tmp_path / "one", tmp_path / "two"
    single = run_torchrun(stage, {**values, "batch_size": 2 * per_rank, "output_dir": one}, nproc=1)
    assert single.returncode == 0, single.stderr[-3000:]
    pair = run_torchrun(stage, {**values, "batch_size": per_rank, "output_dir": two}, nproc=2)
    if pair.returncode != 0:
        pytest.fail(pair.stderr[-3000:])
    assert pair.stdout.count("posttrain: done") == 1  # rank 0 alone logs
    return one, two


def assert_same_steps(one: Path, two: Path, keys: tuple[str, ...]) -> None:
    a_records, b_records = read_metrics(one), read_metrics(two)
    assert [r["step"] for r in b_records] == [r["step"] for r in a_records] == list(range(1, TRAINING["max_steps"] + 1))
    for a, b in zip(a_records, b_records):
        assert a.keys() == b.keys()
        assert b["num_tokens"] == a["num_tokens"]
        for key in ("loss", "grad_norm", *keys):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key, a[key], b[key])
    assert b_records[-1]["eval_loss"] == pytest.approx(a_records[-1]["eval_loss"], rel=1e-4)


def assert_same_weights(one: Path, two: Path, start: str) -> None:
    """final/ of both runs hold the same tensors, and training moved them well past the tolerance."""
    alone, shared = load_file(one / "final" / "model.safetensors"), load_file(two / "final" / "model.safetensors")
    assert alone.keys() == shared.keys()
    before = load_file(Path(start) / "model.safetensors")
    moved = max(float((alone[k] - before[k]).abs().max()) for k in before if k in alone)
    assert moved > 1e-2, moved
    for name in alone:
        torch.testing.assert_close(shared[name], alone[name], rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


# ------------------------------------------------------------------------------------ reward model


@pytest.mark.parametrize("data", ["pairs", "rankings"])
def test_reward_model(tiny_llama, tmp_path, data):
    """Bradley-Terry on pairs (with center_rewards), and on K-wise rankings whose C(K,2) pairs are one
    batch element each; the reward offset written after training is the same mean reward too."""
    rows = preference_rows(16) if data == "pairs" else ranking_rows(16)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    held = write_jsonl(tmp_path / "eval.jsonl", preference_rows(6, seed=1))
    values = {**TRAINING, "model": tiny_llama, "dataset": train, "eval_dataset": held}
    if data == "pairs":
        values["center_rewards_coefficient"] = 0.1
    one, two = run_both("rm", values, per_rank=2, tmp_path=tmp_path)
    assert_same_steps(one, two, ("accuracy", "margin", "chosen_reward"))
    assert_same_weights(one, two, tiny_llama)
    offsets = [json.loads((run / "final" / "config.json").read_text())["reward_offset"] for run in (one, two)]
    assert offsets[1] == pytest.approx(offsets[0], rel=1e-4, abs=1e-6)


# -------------------------------------------------------------------------------- process reward


def test_process_reward_model(tiny_llama, tmp_path):
    """Per-step cross-entropy: the loop's weight is the number of labelled steps over both processes."""
    train = write_jsonl(tmp_path / "train.jsonl", stepwise_rows(16, 0))
    held = write_jsonl(tmp_path / "eval.jsonl", stepwise_rows(6, 1))
    values = {**TRAINING, "model": tiny_llama, "dataset": train, "eval_dataset": held, "max_length": 256}
    one, two = run_both("prm", values, per_rank=2, tmp_path=tmp_path)
    assert_same_steps(one, two, ("accuracy",))
    assert_same_weights(one, two, tiny_llama)


# -------------------------------------------------------------------------------------------- DPO


@pytest.mark.parametrize("variant", ["sigmoid", "tr_dpo"])
def test_dpo(tiny_llama, tmp_path, variant):
    """DPO with a frozen copy of the starting policy as π_ref (sharded like the policy under torchrun),
    and TR-DPO, whose soft updates mix the sharded policy into the sharded reference every 2 steps."""
    train = write_jsonl(tmp_path / "train.jsonl", preference_rows(16))
    held = write_jsonl(tmp_path / "eval.jsonl", preference_rows(6, seed=1))
    values = {**TRAINING, "model": tiny_llama, "dataset": train, "eval_dataset": held, "beta": 0.5}
    if variant == "tr_dpo":
        values.update(ref_sync="soft", ref_sync_steps=2, ref_sync_alpha=0.5)
    one, two = run_both("dpo", values, per_rank=2, tmp_path=tmp_path)
    assert_same_steps(one, two, ("rewards/chosen", "rewards/margins", "rewards/accuracies"))
    assert max(abs(r["rewards/margins"]) for r in read_metrics(two)) > 1e-3  # π moved away from π_ref
    assert_same_weights(one, two, tiny_llama)
