"""The loop's reduction of a step's metrics over processes: two gloo processes whose micro-batches logged
different metric names (PPO leaves out its explained variance where it is undefined) reduce the union of
the names and get what one process gets with both shares; before, the all-reduce lengths differed and
gloo aborted both processes."""

from __future__ import annotations

import pytest

from gloo_processes import run_in_two_processes
from posttrain.train.loop import _reduce

# (loss sum, weight, tokens, metric sums): a metric is (sum, denominator), or (sum, None) for sum / weight
SHARES = [
    (3.0, 4.0, 10.0, {"entropy": (2.0, 4.0), "values/explained_variance": (0.5, 2.0), "clip": (1.0, None)}),
    (1.0, 2.0, 6.0, {"entropy": (1.0, 2.0), "kl": (3.0, None)}),
]


def _reduce_share(rank: int):
    return _reduce(*SHARES[rank])


def test_ranks_with_different_metric_names_reduce_their_union():
    results = run_in_two_processes(_reduce_share)
    means = {"loss": 4.0 / 6.0, "entropy": 3.0 / 6.0, "values/explained_variance": 0.5 / 2.0, "clip": 1.0 / 6.0, "kl": 3.0 / 6.0}
    for rank in range(2):
        got, tokens = results[rank]
        assert tokens == 16.0
        assert got == pytest.approx(means, rel=1e-12), rank
    # one process holding both shares' micro-batches gets the same numbers
    merged = {"entropy": (3.0, 6.0), "values/explained_variance": (0.5, 2.0), "clip": (1.0, None), "kl": (3.0, None)}
    assert _reduce(4.0, 6.0, 16.0, merged) == (pytest.approx(means, rel=1e-12), 16.0)
