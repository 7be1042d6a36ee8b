"""Under two gloo processes (real torch.distributed on 127.0.0.1) a frozen reward model and a frozen PRM
are sharded with FSDP2 the first time they score (models.sharding.shard_frozen): every parameter is a
DTensor of which each process holds half, and the scores equal those of the full model, computed in the
same process before sharding. The processes score different numbers of sequences (5 and 1, two per
batch: three forwards and one), which a collective forward allows only because the process with fewer
batches runs dummy ones (batch_starts); one that scores none at all still takes part."""

from __future__ import annotations

import copy
import os

import torch

from gloo_processes import run_in_two_processes
from posttrain.models.reward_model import load_reward_model, score_sequences
from posttrain.models.sharding import is_sharded
from posttrain.rewards.process import step_scores

TINY_MODEL_ENV = "POSTTRAIN_TEST_TINY_MODEL"
PRM_ENV = "POSTTRAIN_TEST_PRM"


def _sequences(rank: int) -> list[list[int]]:
    counts = (5, 1)
    return [[3 + rank + k + j for j in range(4 + 2 * k)] for k in range(counts[rank])]


def _halves(model) -> list[tuple[str, int, int]]:
    return [(type(p).__name__, p.to_local().numel() if hasattr(p, "to_local") else p.numel(), p.numel()) for p in model.parameters()]


def _sharded_scorers(rank: int) -> dict:
    from transformers import AutoModelForTokenClassification

    from posttrain.models.loading import load_tokenizer

    torch.manual_seed(0)
    rm = load_reward_model(os.environ[TINY_MODEL_ENV], pad_token_id=0).eval().requires_grad_(False)
    full_rm = copy.deepcopy(rm).requires_grad_(True)  # a model that trains is the loop's to shard: scored as it is
    seqs = _sequences(rank)
    expected = score_sequences(full_rm, seqs, 0, batch_size=2)
    torch.distributed.barrier()
    got = score_sequences(rm, seqs, 0, batch_size=2)
    none = score_sequences(rm, [] if rank == 1 else seqs[:1], 0, batch_size=2)  # rank 1 has nothing to score

    prm = AutoModelForTokenClassification.from_pretrained(os.environ[PRM_ENV]).eval().requires_grad_(False)
    tokenizer = load_tokenizer(os.environ[PRM_ENV])
    prompts = ["Add 2 and 3."] * (3 if rank == 0 else 1)
    completions = ["2 + 3 = 5\nSo 5.", "first\nsecond\nthird", "one step"][:len(prompts)]
    prm_expected = step_scores(copy.deepcopy(prm).requires_grad_(True), tokenizer, prompts, completions, "\n", batch_size=1)
    torch.distributed.barrier()
    prm_got = step_scores(prm, tokenizer, prompts, completions, "\n", batch_size=1)
    return {"expected": expected, "got": got, "none": none, "sharded": is_sharded(rm) and is_sharded(prm) and not is_sharded(full_rm),
            "rm_shards": _halves(rm), "prm_shards": _halves(prm), "prm_expected": prm_expected, "prm_got": prm_got}


def test_frozen_reward_models_are_sharded_and_score_as_the_full_models(tiny_llama, prm_dir, monkeypatch):
    monkeypatch.setenv(TINY_MODEL_ENV, tiny_llama)  # the spawned processes inherit it
    monkeypatch.setenv(PRM_ENV, prm_dir)
    results = run_in_two_processes(_sharded_scorers)
    for rank, out in results.items():
        assert out["sharded"], rank
        assert len(out["got"]) == len(_sequences(rank)) and len(out["none"]) == (0 if rank else 1)
        torch.testing.assert_close(torch.tensor(out["got"]), torch.tensor(out["expected"]), rtol=1e-5, atol=1e-5)
        assert len(out["prm_got"]) == len(out["prm_expected"])
        for got, expected in zip(out["prm_got"], out["prm_expected"]):
            torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=1e-5, atol=1e-5)
        for shards in (out["rm_shards"], out["prm_shards"]):
            assert all(kind == "DTensor" for kind, _, _ in shards), shards
    assert results[0]["got"] != results[1]["got"][:1] * 5  # each process scored its own sequences
    for key in ("rm_shards", "prm_shards"):  # every weight held once; each process about half of the model
        for mine, theirs in zip(results[0][key], results[1][key]):
            assert mine[1] + theirs[1] == mine[2], (mine, theirs)
        total = sum(full for _, _, full in results[0][key])
        assert all(sum(local for _, local, _ in results[r][key]) <= 0.55 * total for r in (0, 1))
