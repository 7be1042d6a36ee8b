"""Several gloo processes on 127.0.0.1: a function run in two of them, collecting what each returns (a
picklable value: plain lists, not tensors, since a tensor sent through a queue is shared by file
descriptor and is gone when its process exits; fails at once when a process dies, as gloo aborts on
mismatched collectives); and a `posttrain` command under torchrun."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from queue import Empty

import torch.distributed as dist
import torch.multiprocessing as mp

REPO = Path(__file__).resolve().parents[1]


def _worker(target, rank: int, port: int, queue) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        queue.put((rank, target(rank)))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_in_two_processes(target, timeout: float = 120.0) -> dict:
    """{rank: target(rank)} for ranks 0 and 1 of a two-process gloo group; `target` is a module-level function."""
    context = mp.get_context("spawn")
    queue, port = context.Queue(), _free_port()
    workers = [context.Process(target=_worker, args=(target, rank, port, queue)) for rank in range(2)]
    for w in workers:
        w.start()
    results, waited = {}, 0.0
    while len(results) < len(workers):
        try:
            rank, result = queue.get(timeout=2)
            results[rank] = result
        except Empty:
            waited += 2
            assert waited < timeout and all(w.is_alive() or w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    return results


def run_torchrun(stage: str, values: dict, nproc: int = 2, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`posttrain STAGE key=value ...` under `torchrun --standalone --nproc-per-node NPROC` (CPU, gloo, 1 thread
    each), capturing output."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
                           "-m", "posttrain", stage, *(f"{k}={v}" for k, v in values.items())],
                          capture_output=True, text=True, env=full_env, cwd=REPO, timeout=timeout)
