"""A GRPO round's rollout, posttrain's sampler in this process vs 2 Ray rollout workers (ray=true).

What is timed is what a GRPO step spends on sampling with each backend: `sync_weights()` (Ray: the
weights into the object store once, every actor loads them) then `generate_rollouts` of P prompts x
G completions, on the shipped embedded model, fp32 on CPU, temperature 1.0. Both backends draw the
same samples (per-prompt seeds), which the script checks, so the ratio compares equal work. The
median over `--rounds` timed rounds after one warm-up round is printed, and local / ray.

    unshare -n bash -c 'ip link set lo up; python benchmarks/bench_ray_rollout.py'      # Ray on loopback only
    python benchmarks/bench_ray_rollout.py --workers 2 --threads 1 --rounds 5 --prompts 16

`--threads` is the torch threads of this process (the local sampler) and `--worker-cpus` what each
actor reserves (its torch threads): on a machine with C cores compare threads=C with workers x
worker_cpus = C. Ray pays off where the workers get cores (or GPUs, or nodes) the learner does not
have; on one small machine it only adds the transfer and the start-up.

Measured 2026-12-05 on the shared 2-core VM (load average 6.5 from other jobs, so expect noise), P=8 x
G=8, 64 new tokens, Ray 2.60.0 on loopback:

    $ OMP_NUM_THREADS=1 python benchmarks/bench_ray_rollout.py --rounds 3 --threads 1
      local (1 threads)            median 1.182 s     3110 tok/s
      ray (2 workers x 1 CPU)     median 1.263 s     2910 tok/s   (start-up 18.1 s, once a run)
      local / ray: 0.94x

Two workers on two busy cores did not beat one thread here (the weight sync and the shards' own
prompt passes cost about what the second core gave); the point of ray=true is cores, GPUs and nodes
beyond the learner's. (With --threads 2 on the same loaded machine the local sampler took 19.5 s a
round: two OpenMP threads on oversubscribed cores; keep threads x processes within the free cores.)
"""

from __future__ import annotations

import argparse
import statistics
import time


def timed_rounds(backend, prompts, params, rounds: int) -> tuple[list[float], object]:
    from posttrain.rollout import generate_rollouts

    times, last = [], None
    for _ in range(rounds + 1):  # the first round warms up (caches, the actors' first call)
        began = time.perf_counter()
        backend.sync_weights()
        last = generate_rollouts(backend, prompts, params.n, params)
        times.append(time.perf_counter() - began)
    return times[1:], last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-cpus", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--address", default=None, help="ray_address (default: a local cluster)")
    args = parser.parse_args()

    import torch

    from posttrain.generation import SamplingParams
    from posttrain.models.loading import load_causal_lm, load_tokenizer
    from posttrain.rollout import LocalBackend
    from posttrain.rollout.ray_backend import RayBackend
    from posttrain.tasks.sources import load_rows

    torch.set_num_threads(args.threads)
    model, tokenizer = load_causal_lm("embedded"), load_tokenizer("embedded")
    rows = load_rows("task:arithmetic", "train")[: args.prompts]
    prompts = [tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True) for row in rows]
    prompts = [list(p["input_ids"]) if hasattr(p, "keys") else list(p) for p in prompts]
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0, n=args.generations, seed=0)

    local_times, local_out = timed_rounds(LocalBackend(model, tokenizer), prompts, params, args.rounds)
    began = time.perf_counter()
    ray_backend = RayBackend(model, tokenizer, workers=args.workers, worker_cpus=args.worker_cpus, address=args.address)
    start_up = time.perf_counter() - began
    ray_times, ray_out = timed_rounds(ray_backend, prompts, params, args.rounds)
    assert ray_out.completion_ids == local_out.completion_ids, "the backends drew different samples"

    tokens = local_out.num_completion_tokens
    local, ray = statistics.median(local_times), statistics.median(ray_times)
    print(f"rollout of {args.prompts} prompts x {args.generations} ({tokens} completion tokens), embedded model, CPU")
    print(f"  local ({args.threads} threads)            median {local:.3f} s  {tokens / local:7.0f} tok/s")
    print(f"  ray ({args.workers} workers x {args.worker_cpus:g} CPU)     median {ray:.3f} s  {tokens / ray:7.0f} tok/s"
          f"   (start-up {start_up:.1f} s, once a run)")
    print(f"  local / ray: {local / ray:.2f}x")


if __name__ == "__main__":
    main()
