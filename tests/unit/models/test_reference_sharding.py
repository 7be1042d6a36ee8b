"""Under two gloo processes (real torch.distributed on 127.0.0.1) the frozen reference of
models.reference.ReferencePolicy is sharded with FSDP2 like the policy: every parameter is a DTensor
of which each process holds half; its log-probs equal those of the unsharded starting model; and
ReferenceSync's soft update of the sharded reference from the sharded policy, its saved state and
the reload of that state give exactly the arithmetic of the unsharded update
(θ_ref ← α θ + (1 − α) θ_ref, worked out here on full CPU copies)."""

from __future__ import annotations

import copy
import os

import torch

from gloo_processes import run_in_two_processes
from posttrain.models.loading import load_causal_lm
from posttrain.models.logprobs import sequence_logprobs
from posttrain.models.reference import ReferencePolicy, ReferenceSync
from posttrain.models.sharding import is_sharded, shard_model

TINY_MODEL_ENV = "POSTTRAIN_TEST_TINY_MODEL"
ALPHA = 0.25


def _nudge(model, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)


def _sharded_reference(rank: int) -> dict:
    torch.manual_seed(0)
    policy = load_causal_lm(os.environ[TINY_MODEL_ENV])
    start = copy.deepcopy(policy).eval()  # the unsharded starting model: what π_ref must compute
    reference = ReferencePolicy(policy)
    frozen = reference.frozen
    shards = [(type(p).__name__, p.to_local().numel(), p.numel(), p.requires_grad) for p in frozen.parameters()]

    ids = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29], [2, 6, 10, 14, 18, 22, 26, 30]]) + 100 * rank
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[:, :3] = False
    with torch.no_grad():
        expected = sequence_logprobs(start, ids, mask).sums
    got = reference.sequence_logprobs(policy, ids, mask).sums

    # TR-DPO's soft update with the policy sharded as the loop shards it, after the policy moved
    shard_model(policy, torch.device("cpu"))
    sync = ReferenceSync(reference, policy, "soft", 1, ALPHA)
    _nudge(start, seed=7)  # the same nudge on the full copy: the moved policy
    moved = {k: v.clone() for k, v in start.state_dict().items()}
    full_policy = {k: v.detach().clone() for k, v in load_causal_lm(os.environ[TINY_MODEL_ENV]).state_dict().items()}
    with torch.no_grad():
        for name, p in policy.named_parameters():  # the policy's shard of the same nudge
            full = moved[name]
            p.copy_(torch.distributed.tensor.distribute_tensor(full, p.device_mesh, p.placements))
    sync.after_step(policy, 1)
    state = sync.state_dict()
    want = {k: (ALPHA * moved[k] + (1 - ALPHA) * full_policy[k]) for k in state["weights"]}
    after_sync = max(float((state["weights"][k] - want[k]).abs().max()) for k in want)

    fresh = ReferenceSync(ReferencePolicy(load_causal_lm(os.environ[TINY_MODEL_ENV])), policy, "soft", 1, ALPHA)
    fresh.load_state_dict(state)
    reloaded = fresh.state_dict()["weights"]
    round_trip = max(float((reloaded[k] - state["weights"][k]).abs().max()) for k in state["weights"])
    return {"shards": shards, "sharded": is_sharded(frozen) and is_sharded(fresh.model), "expected": expected.tolist(),
            "got": got.tolist(), "after_sync": after_sync, "round_trip": round_trip, "syncs": fresh.syncs}


def test_reference_is_sharded_like_the_policy_and_scores_as_the_full_model(tiny_llama, monkeypatch):
    monkeypatch.setenv(TINY_MODEL_ENV, tiny_llama)  # the spawned processes inherit it
    results = run_in_two_processes(_sharded_reference)
    for rank, out in results.items():
        assert out["sharded"], rank
        assert all(kind == "DTensor" and not trainable for kind, _, _, trainable in out["shards"])
        torch.testing.assert_close(torch.tensor(out["got"]), torch.tensor(out["expected"]), rtol=1e-5, atol=1e-5)
        assert out["after_sync"] < 1e-6 and out["round_trip"] == 0.0 and out["syncs"] == 1, out
    assert results[0]["got"] != results[1]["got"]  # each process scored its own batch
    for mine, theirs in zip(results[0]["shards"], results[1]["shards"]):  # every weight held once, split in halves
        assert mine[1] + theirs[1] == mine[2] and max(mine[1], theirs[1]) <= (mine[2] + 1) // 2 + mine[2] // 8, (mine, theirs)
