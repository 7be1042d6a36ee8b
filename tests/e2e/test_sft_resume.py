"""A run killed mid-way and resumed ends exactly where the uninterrupted run ends: same weights
(torch.equal) and the same metrics lines, none duplicated."""

import pytest
import torch

from conftest import final_weights, read_metrics, run_cli, sft_rows, without_timing, write_jsonl
from posttrain.train.loop import STOP_ENV


@pytest.mark.parametrize("extra", [[], ["lora=true", "lora_r=4", "lora_dropout=0.2"]], ids=["full", "lora-dropout"])
def test_killed_and_resumed_run_matches_uninterrupted(tmp_path, tiny_llama, extra):
    train_file = write_jsonl(tmp_path / "train.jsonl", sft_rows(40))
    eval_file = write_jsonl(tmp_path / "eval.jsonl", sft_rows(6, seed=1))
    args = [f"model={tiny_llama}", f"dataset={train_file}", f"eval_dataset={eval_file}", "device=cpu", "max_length=128",
            "batch_size=2", "gradient_accumulation_steps=2", "max_steps=12", "learning_rate=1e-3", "warmup_steps=2",
            "logging_steps=3", "eval_steps=4", "save_steps=4", "keep_last=1", *extra]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = run_cli("sft", *args, f"output_dir={whole}")
    assert done.returncode == 0, done.stderr

    # killed (SIGKILL) right after step 10: checkpoint step-8 exists, metrics already hold step 9
    killed = run_cli("sft", *args, f"output_dir={broken}", env={STOP_ENV: "10"})
    assert killed.returncode == -9
    assert not (broken / "final").exists()
    assert sorted(p.name for p in (broken / "checkpoints").iterdir()) == ["step-8"]
    assert read_metrics(broken)[-1]["step"] == 9
    (broken / "checkpoints" / ".tmp-step-12").mkdir()  # as if killed while writing a checkpoint

    if not extra:
        refused = run_cli("sft", *args, f"output_dir={broken}")
        assert refused.returncode == 2 and "set resume=true" in refused.stderr

    resumed = run_cli("sft", *args, f"output_dir={broken}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step 8" in resumed.stdout
    assert without_timing(read_metrics(broken)) == without_timing(read_metrics(whole))
    assert [r["step"] for r in read_metrics(broken)] == [3, 4, 6, 8, 9, 12]
    a, b = final_weights(whole), final_weights(broken)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (broken / "checkpoints").iterdir()) == ["step-12"]
