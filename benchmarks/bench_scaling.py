"""GRPO on the same global batch three ways: one process; two processes under torchrun (FSDP2, gloo,
each half the prompts); one learner with two Ray rollout workers (ray=true, disaggregated placement).
Prints steps/s and where the time goes (metrics.jsonl's time/* of rank 0), medians over the steps
after the first, and the ratios to the one-process run.

    unshare -n bash -c 'ip link set lo up; python benchmarks/bench_scaling.py'    # Ray on loopback only
    python benchmarks/bench_scaling.py --no-ray

The embedded model on task:arithmetic, P prompts x G=8 per step (torchrun: P/2 each), up to 96 new
tokens, β = 0, one thread per process (torchrun: 2 processes x 1 thread; Ray: the learner's thread
plus 1 CPU per worker). On a machine with C cores, each side may use all C; on the 2-core VM two
processes is the most either way.

Measured 2026-12-05 on the idle 2-core VM (`--steps 5`):
  one       0.308 steps/s (1.00x one process)  per step 3.24 s: rollout 1.53, training 1.70
  torchrun  0.423 steps/s (1.37x one process)  per step 2.36 s: rollout 1.02, training 1.21
  ray       0.292 steps/s (0.95x one process)  per step 3.42 s: weight sync 0.06, rollout 1.28, training 2.06
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
    prompts = args.prompts // 2 if kind == "torchrun" else args.prompts
    values = {"model": "embedded", "dataset": "task:arithmetic", "output_dir": out, "max_steps": args.steps, "prompts_per_step": prompts,
              "num_generations": 8, "max_new_tokens": 96, "batch_size": 16, "learning_rate": 1e-6, "logging_steps": 1,
              "device": "cpu", "overwrite_output_dir": "true"}
    if kind == "ray":
        values |= {"ray": "true", "ray_workers": 2, "ray_placement": "disaggregate"}
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
    kinds = ["one", "torchrun"] + ([] if args.no_ray else ["ray"])
    results = {kind: run(kind, args, work) for kind in kinds}
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"GRPO, embedded model, {args.prompts} prompts x G=8 per step (global), <= 96 new tokens; medians of steps 2..{args.steps}")
    one = results["one"]["step"]
    for kind, r in results.items():
        p = r["phases"]
        training = r["step"] - p["experience"]
        print(f"  {kind:9s} {1 / r['step']:.3f} steps/s ({one / r['step']:.2f}x one process)  per step {r['step']:.2f} s: "
              f"weight sync {p['weight_sync']:.2f}, rollout {p['rollout']:.2f}, reward {p['reward']:.2f}, "
              f"other experience {p['experience'] - p['rollout'] - p['reward'] - p['weight_sync']:.2f}, training {training:.2f}")


if __name__ == "__main__":
    main()
