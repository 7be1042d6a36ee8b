"""The loop's reduction of a step's metrics over processes: two gloo processes whose micro-batches logged
different metric names (PPO leaves out its explained variance where it is undefined) reduce the union of
the names and get what one process gets with both shares; before, the all-reduce lengths differed and
gloo aborted both processes."""

from __future__ import annotations

import socket
from queue import Empty

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from posttrain.train.loop import _reduce

# (loss sum, weight, tokens, metric sums): a metric is (sum, denominator), or (sum, None) for sum / weight
SHARES = [
    (3.0, 4.0, 10.0, {"entropy": (2.0, 4.0), "values/explained_variance": (0.5, 2.0), "clip": (1.0, None)}),
    (1.0, 2.0, 6.0, {"entropy": (1.0, 2.0), "kl": (3.0, None)}),
]


def _worker(rank: int, port: int, queue) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        queue.put((rank, _reduce(*SHARES[rank])))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ranks_with_different_metric_names_reduce_their_union():
    context = mp.get_context("spawn")
    queue, port = context.Queue(), free_port()
    workers = [context.Process(target=_worker, args=(rank, port, queue)) for rank in range(2)]
    for w in workers:
        w.start()
    results = {}
    while len(results) < len(workers):  # fail at once when a worker dies (gloo aborts on mismatched lengths)
        try:
            rank, result = queue.get(timeout=2)
            results[rank] = result
        except Empty:
            assert all(w.is_alive() or w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    means = {"loss": 4.0 / 6.0, "entropy": 3.0 / 6.0, "values/explained_variance": 0.5 / 2.0, "clip": 1.0 / 6.0, "kl": 3.0 / 6.0}
    for rank in range(2):
        got, tokens = results[rank]
        assert tokens == 16.0
        assert got == pytest.approx(means, rel=1e-12), rank
    # one process holding both shares' micro-batches gets the same numbers
    merged = {"entropy": (3.0, 6.0), "values/explained_variance": (0.5, 2.0), "clip": (1.0, None), "kl": (3.0, None)}
    assert _reduce(4.0, 6.0, 16.0, merged) == (pytest.approx(means, rel=1e-12), 16.0)
