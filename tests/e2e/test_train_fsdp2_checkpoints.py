"""Checkpoints under `torchrun --nproc-per-node 2` (FSDP2, gloo, CPU) are sharded: each process writes
its own shards of the weights and the optimizer state with torch.distributed.checkpoint (no full state
dict is gathered for them), and a run killed after a checkpoint and resumed from it ends with exactly
the weights and metrics of the uninterrupted two-process run; final/ stays save_pretrained output."""

from __future__ import annotations

import torch
import torch.distributed.checkpoint as dcp
from transformers import AutoModelForCausalLM

from conftest import final_weights, read_metrics, sft_rows, without_timing, write_jsonl
from gloo_processes import run_torchrun
from posttrain.train.loop import STOP_ENV


def test_killed_and_resumed_two_process_run_matches_uninterrupted(tiny_llama, tmp_path):
    values = dict(model=tiny_llama, dataset=write_jsonl(tmp_path / "train.jsonl", sft_rows(24)),
                  eval_dataset=write_jsonl(tmp_path / "eval.jsonl", sft_rows(4, seed=1)), device="cpu", max_length=128,
                  batch_size=2, gradient_accumulation_steps=2, max_steps=6, learning_rate=3e-3, warmup_steps=1,
                  lr_scheduler="cosine", logging_steps=1, eval_steps=3, save_steps=2, keep_last=2)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = run_torchrun("sft", {**values, "output_dir": whole})
    assert done.returncode == 0, done.stderr[-3000:]

    # the layout: every rank's shards and dcp's metadata, no gathered model.pt / optimizer.pt
    step = whole / "checkpoints" / "step-6"
    files = {p.relative_to(step).as_posix() for p in step.rglob("*") if p.is_file()}
    assert {"distributed/.metadata", "distributed/__0_0.distcp", "distributed/__1_0.distcp", "trainer_state.pt",
            "model.safetensors", "config.json"} <= files
    assert not {"model.pt", "optimizer.pt"} & files
    metadata = dcp.FileSystemReader(str(step / "distributed")).read_metadata().state_dict_metadata
    embed = metadata["model.model.embed_tokens.weight"]
    assert [tuple(chunk.sizes) for chunk in embed.chunks] == [(embed.size[0] // 2, embed.size[1])] * 2  # one half per rank
    assert any(key.startswith("optimizer.state.") and key.endswith(".exp_avg_sq") for key in metadata)
    # the checkpoint's save_pretrained files are the model of that step, here the last: final/'s weights
    saved = AutoModelForCausalLM.from_pretrained(step).state_dict()
    last = final_weights(whole)
    assert all(torch.equal(saved[k], last[k]) for k in last)

    # killed (SIGKILL, each process) right after step 5: checkpoints step-2 and step-4 exist, metrics hold step 5
    killed = run_torchrun("sft", {**values, "output_dir": broken}, env={STOP_ENV: "5"})
    assert killed.returncode != 0
    assert not (broken / "final").exists()
    assert sorted(p.name for p in (broken / "checkpoints").iterdir()) == ["step-2", "step-4"]
    assert read_metrics(broken)[-1]["step"] == 5

    resumed = run_torchrun("sft", {**values, "output_dir": broken, "resume": "true"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at step 4" in resumed.stdout
    assert without_timing(read_metrics(broken)) == without_timing(read_metrics(whole))
    a, b = final_weights(whole), final_weights(broken)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (broken / "final" / "model.safetensors").is_file() and not (broken / "final" / "distributed").exists()
