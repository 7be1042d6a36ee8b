"""Batch statistics over processes: two gloo processes, each holding half the batch, compute with
`reduce=posttrain.ranks.all_reduce_sum` exactly what one process computes on the whole batch —
GRPO's batch std, REINFORCE's batch mean, and the whitening of REINFORCE++ and PPO."""

from __future__ import annotations

import torch

from gloo_processes import run_in_two_processes
from posttrain.losses import advantages as adv

REWARDS = torch.tensor([0.1, 0.9, 0.4, 0.4, 2.0, -1.0, 0.3, float("nan"), 0.5, 0.7, 1.5, -0.2])  # 6 groups of 2
TOKENS = torch.tensor([[0.5, -1.0, 2.0, 0.0], [1.5, 0.3, 0.0, 0.0], [-0.7, 0.2, 0.9, 1.1], [0.4, 0.0, 0.0, 0.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.float32)


def statistics(rewards, tokens, mask, reduce):
    return {
        "grpo_batch": adv.group_advantages(rewards, 2, scale="batch", reduce=reduce),
        "grpo_batch_population": adv.group_advantages(rewards, 2, scale="batch", unbiased=False, reduce=reduce),
        "reinforce_mean": adv.reinforce_advantages(rewards, None, baseline="mean", reduce=reduce),
        "whiten": adv.whiten(tokens, mask, reduce=reduce),
        "reinforce_pp": adv.reinforce_plus_plus_advantages(tokens, mask, reduce=reduce),
    }


def _half_batch_statistics(rank: int) -> dict:
    import posttrain.ranks as ranks

    half = slice(0, 6) if rank == 0 else slice(6, 12)  # whole groups on each process
    rows = slice(0, 2) if rank == 0 else slice(2, 4)
    result = statistics(REWARDS[half], TOKENS[rows], MASK[rows], ranks.all_reduce_sum)
    return {name: values.tolist() for name, values in result.items()}


def test_two_processes_take_the_statistics_of_one_with_the_whole_batch():
    results = run_in_two_processes(_half_batch_statistics)
    whole = statistics(REWARDS, TOKENS, MASK, None)
    for name, want in whole.items():
        got = torch.tensor(results[0][name] + results[1][name])
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6, msg=name)
    # and the per-process statistics differ from the whole batch's: the test would catch a local one
    alone = statistics(REWARDS[:6], TOKENS[:2], MASK[:2], None)
    assert not torch.allclose(alone["grpo_batch"], whole["grpo_batch"][:6])
    assert not torch.allclose(alone["whiten"], whole["whiten"][:2])


def test_a_reduce_on_one_process_changes_nothing():
    import posttrain.ranks as ranks

    for name, want in statistics(REWARDS, TOKENS, MASK, None).items():
        torch.testing.assert_close(statistics(REWARDS, TOKENS, MASK, ranks.all_reduce_sum)[name], want, atol=1e-6, rtol=1e-6, msg=name)
