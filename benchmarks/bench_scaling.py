"""GRPO on the same global batch four ways: one process; two processes under torchrun (FSDP2, gloo,
each half the prompts); one learner with two Ray rollout workers (ray=true, disaggregated placement);
two learners that Ray places as a torch.distributed group (ray_learners=2, half the prompts each), each
with one rollout actor beside it (half a CPU per actor: Ray sees the VM's 2 cores).
Prints steps/s and where the time goes (metrics.jsonl's time/* of rank 0), medians over the steps
after the first, and the ratios to the one-process run.

    unshare -n bash -c 'ip link set lo up; python benchmarks/bench_scaling.py'    # Ray on loopback only
    python benchmarks/bench_scaling.py --no-ray

The embedded model on task:arithmetic, P prompts x G=8 per step (torchrun: P/2 each), up to 96 new
tokens, β = 0, one thread per process (torchrun: 2 processes x 1 thread; Ray: the learner's thread
plus 1 CPU per worker). On a machine with C cores, each side may use all C; on the 2-core VM two
processes is the most either way.

Measured 2026-12-05 on the 2-core VM (`--steps 5`; the one other job on it paused):
  one          0.355 steps/s (1.00x one process)  per step 2.82 s: rollout 1.21, training 1.59
  torchrun     0.492 steps/s (1.39x one process)  per step 2.03 s: rollout 0.82, training 1.10
  ray          0.383 steps/s (1.08x one process)  per step 2.61 s: weight sync 0.05, rollout 0.98, training 1.57
  ray_learners 0.533 steps/s (1.50x one process)  per step 1.88 s: weight sync 0.10, rollout 0.73, training 0.96
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = ("weight_sync", "rollout", "reward", "experience")


def run(kind: str, args, work: Path) -> dict:
    out = work / kind
    prompts = args.prompts // 2 if kind in ("torchrun", "ray_learners") else args.prompts
    values = {"model": "embedded", "dataset": "task:arithmetic", "output_dir": out, "max_steps": args.steps, "prompts_per_step": prompts,
              "num_generations": 8, "max_new_tokens": 96, "batch_size": 16, "learning_rate": 1e-6, "logging_steps": 1,
              "device": "cpu", "overwrite_output_dir": "true"}
    if kind == "ray":
        values |= {"ray": "true", "ray_workers": 2, "ray_placement": "disaggregate"}
    if kind == "ray_learners":
        values |= {"ray": "true", "ray_learners": 2, "ray_learner_cpus": 0.5, "ray_workers": 1, "ray_worker_cpus": 0.5}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"] if kind == "torchrun" \
        else [sys.executable]
    command = [*launcher, "-m", "posttrain", "grpo", *(f"{k}={v}" for k, v in values.items())]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    began = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    every = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    records = every[1:]  # the first step warms up
    # num_tokens is cumulative: a step's tokens over its rate are its seconds
    steps = [(r["num_tokens"] - before["num_tokens"]) / r["tokens_per_second"] for before, r in zip(every, records)]
    phases = {p: statistics.median(r.get(f"time/{p}_seconds", 0.0) for r in records) for p in PHASES}
    return {"command": shlex.join(command[1:] if kind != "torchrun" else command[1:]), "wall": time.perf_counter() - began,
            "step": statistics.median(steps), "phases": phases}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=8, help="global prompts per step (torchrun: half on each process)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    kinds = ["one", "torchrun"] + ([] if args.no_ray else ["ray", "ray_learners"])
    results = {kind: run(kind, args, work) for kind in kinds}
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"GRPO, embedded model, {args.prompts} prompts x G=8 per step (global), <= 96 new tokens; medians of steps 2..{args.steps}")
    one = results["one"]["step"]
    for kind, r in results.items():
        p = r["phases"]
        training = r["step"] - p["experience"]
        print(f"  {kind:12s} {1 / r['step']:.3f} steps/s ({one / r['step']:.2f}x one process)  per step {r['step']:.2f} s: "
              f"weight sync {p['weight_sync']:.2f}, rollout {p['rollout']:.2f}, reward {p['reward']:.2f}, "
              f"other experience {p['experience'] - p['rollout'] - p['reward'] - p['weight_sync']:.2f}, training {training:.2f}")


if __name__ == "__main__":
    main()
