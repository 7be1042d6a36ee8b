"""The async producer's schedule on a real (small) module: which policy version samples each round for
a given max_staleness, the snapshot it samples from, errors re-raised in the trainer's thread, and the
intra-op threads split while it runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from posttrain.online.async_rollout import RolloutProducer


def producer(max_staleness: int, steps_per_round: int = 2, max_steps: int = 8, collect=None):
    policy = torch.nn.Linear(2, 2)
    with torch.no_grad():
        policy.weight.zero_()
    maker = SimpleNamespace(policy=policy, backend=None)
    cfg = SimpleNamespace(num_iterations=1, num_minibatches=steps_per_round, max_staleness=max_staleness, max_steps=max_steps)
    sampled = []

    def default_collect(version):
        sampled.append((version, float(made.backend.replica.weight.detach().sum())))  # the snapshot's weights
        return version

    made = RolloutProducer(maker, tokenizer=None, config=cfg, collect=collect or default_collect)
    return made, policy, sampled


def drive(made, policy, steps: int, steps_per_round: int = 2) -> list[int]:
    """The source's calls: a round taken at each round's first step, then start_if_due; one 'optimizer step'
    (+1 on every weight) per step. Returns the version that sampled the round each step trains."""
    trained = []
    for version in range(steps):
        if version % steps_per_round == 0:
            current = made.take(version)
        trained.append(current)
        made.start_if_due(version)
        with torch.no_grad():
            policy.weight += 1.0
    return trained


@pytest.mark.parametrize("staleness, versions", [(0, [0, 0, 2, 2, 4, 4, 6, 6]), (1, [0, 0, 1, 1, 3, 3, 5, 5]),
                                                 (2, [0, 0, 0, 0, 2, 2, 4, 4]), (5, [0, 0, 0, 0, 2, 2, 4, 4])])
def test_each_round_is_sampled_at_the_first_version_the_bound_allows(staleness, versions):
    made, policy, sampled = producer(staleness)
    assert drive(made, policy, 8) == versions
    # each round sampled from the weights of its version (4 weights from 0, +1 each per step), none beyond max_steps
    assert sampled == [(v, 4.0 * v) for v in versions[::2]]


def test_an_error_while_sampling_is_raised_in_the_trainers_thread():
    def collect(version):
        raise RuntimeError(f"reward server down at version {version}")

    made, _, _ = producer(1, collect=collect)
    with pytest.raises(RuntimeError, match="at version 0"):
        made.take(0)


def test_the_threads_are_split_while_the_producer_runs_and_restored_after():
    threads = torch.get_num_threads()
    seen = []
    made, _, _ = producer(2, collect=lambda version: seen.append(torch.get_num_threads()))
    made.take(0)
    made.start_if_due(0)
    assert torch.get_num_threads() == max(1, threads // 2)
    made.take(2)
    assert torch.get_num_threads() == threads and seen == [threads, max(1, threads // 2)]
