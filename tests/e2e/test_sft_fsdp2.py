"""The same loop under `torchrun --nproc-per-node 2` (FSDP2, gloo, CPU) gives the loss curve of one
process reading the same global batches."""

import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import REPO, final_weights, read_metrics, sft_config, sft_rows, write_jsonl
from posttrain.algorithms.sft import run_sft


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_fsdp2_two_processes_match_one(tmp_path, tiny_llama, packing):
    train_file = write_jsonl(tmp_path / "train.jsonl", sft_rows(48))
    eval_file = write_jsonl(tmp_path / "eval.jsonl", sft_rows(5, seed=1))
    common = dict(model=tiny_llama, dataset=train_file, eval_dataset=eval_file, max_length=256 if packing else 128,
                  max_steps=5, eval_steps=5, gradient_accumulation_steps=2, lr_scheduler="cosine", warmup_steps=1,
                  packing=packing, save_steps=5)
    per_rank = 1 if packing else 2
    single = tmp_path / "single"
    run_sft(sft_config(**common, output_dir=str(single), batch_size=2 * per_rank))

    multi = tmp_path / "multi"
    args = [f"{k}={v}" for k, v in {**common, "batch_size": per_rank, "output_dir": multi, "device": "cpu",
                                    "logging_steps": 1, "learning_rate": 1e-3}.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "posttrain", "sft", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("posttrain: done") == 1  # rank 0 alone logs

    one, two = read_metrics(single), read_metrics(multi)
    assert [r["step"] for r in two] == [1, 2, 3, 4, 5]
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3)
        assert b["num_tokens"] == a["num_tokens"]
    assert two[-1]["eval_loss"] == pytest.approx(one[-1]["eval_loss"], rel=1e-4)
    w1, w2 = final_weights(single), final_weights(multi)
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-3, atol=1e-5)
    assert (multi / "checkpoints" / "step-5" / "distributed" / ".metadata").is_file()  # sharded: tests/e2e/test_train_fsdp2_checkpoints.py
    # the checkpoint's save_pretrained files come from the same full state dict as final/ (rank 0 writes both)
    saved = AutoModelForCausalLM.from_pretrained(multi / "checkpoints" / "step-5").state_dict()
    assert saved.keys() == w2.keys() and all(torch.equal(saved[k], w2[k]) for k in w2)
