"""Online DPO per batch, measured: does the policy learn the embedded sentiment task's gold reward?

Each variant trains the shipped embedded model (no SFT: it already writes reviews of every shade) with
`posttrain online_dpo` on task:sentiment's train prompts: every step samples 2 reviews for each of 16
fresh prompts from the current policy, the task's gold reward picks the chosen one, and one optimizer
step follows. Then the `compare` stage samples 2 reviews for each of 100 held-out films from every
policy (temperature 1) and reports the gold reward, the sequence KL to the starting model and the win
rate against it. The curve columns are the mean gold reward of the training samples (fresh prompts,
on-policy) over the first and the last 5 steps.

    python benchmarks/bench_online_dpo.py                              # online_dpo and bpo_k10, 40 steps each
    python benchmarks/bench_online_dpo.py --variants bpo_k1 online_ipo --steps 20

On an idle 2-core CPU the default takes about 3 minutes (--threads 1).

Measured 2026-12-04 on the shared 2-core VM while other jobs ran (so the seconds are upper bounds;
40 steps took ~56 s of CPU time each):

    $ python benchmarks/bench_online_dpo.py
    policy        held-out gold  KL(seq)  win rate   train reward first->last 5 steps  pair acc  seconds
    start          0.4641 ±0.022    0.000
    online_dpo     0.8052 ±0.016   27.303     0.805                   0.5560 -> 0.7993     0.500    183.3
    bpo_k10        0.7934 ±0.016   39.814     0.782                   0.5560 -> 0.7785     0.628    196.3

    $ python benchmarks/bench_online_dpo.py --variants online_dpo bpo_k1
    online_dpo     0.8052 ±0.016   27.303     0.805                   0.5560 -> 0.7993     0.500    168.3
    bpo_k1         1.0000 ±0.000  335.289     1.000                   0.5515 -> 1.0000     0.000    175.7

bpo_k1 games the gold reward ("... recommend recommend recommend ..."): with π_β refreshed every step
the loss is log 2 at every step and nothing holds the policy near anything. (Measured when BPO kept a
frozen snapshot of its own; the ref_sync=hard preset and reference=behaviour give the same metrics to
the last digit on the tiny model of tests/e2e, so the numbers stand.)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


# name -> (preset, extra options)
VARIANTS = {
    "online_dpo": ("online_dpo", {}),  # π_ref: the starting model
    "online_ipo": ("online_ipo", {}),
    "online_slic": ("online_slic", {}),
    "bpo_k10": ("bpo", {}),  # the preset: π_β the initial reference hard-synced every 10 steps (ref_sync=hard ref_sync_steps=10)
    "bpo_k1": ("online_dpo", {"reference": "behaviour"}),  # π_β each one-step round's sampler: the anchor is the policy itself, no trust region
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=["online_dpo", "bpo_k10"], choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    import posttrain

    root = Path(args.out or tempfile.mkdtemp(prefix="bench-online-dpo-"))
    curves, seconds = {}, {}
    for name in args.variants:
        preset, extra = VARIANTS[name]
        began = time.perf_counter()
        config = posttrain.config_for("online_dpo", preset=preset, dataset="task:sentiment", reward_funcs=["task"],
                                      max_steps=args.steps, prompts_per_step=16, batch_size=32, max_new_tokens=48,
                                      learning_rate=args.lr, logging_steps=5, output_dir=str(root / name), device="cpu", **extra)
        posttrain.run(config)
        seconds[name] = time.perf_counter() - began
        records = [json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines()]
        curves[name] = (records[0]["reward/mean"], records[-1]["reward/mean"], records[-1]["rewards/accuracies"])
    compare = posttrain.config_for("compare", reference="embedded", dataset="task:sentiment", prompts=100, samples_per_prompt=2,
                                   policies=[f"{v}={root / v / 'final'}" for v in args.variants], output_dir=str(root / "compare"),
                                   device="cpu")
    rows = {r["policy"]: r for r in posttrain.run(compare)["evaluations"]}
    print(f"\nonline_dpo on task:sentiment, embedded model, {args.steps} steps x 16 prompts x 2 samples, lr {args.lr:g}")
    print(f"{'policy':<12} {'held-out gold':>14} {'KL(seq)':>8} {'win rate':>9} {'train reward first->last 5 steps':>34} {'pair acc':>9} {'seconds':>8}")
    start = rows["sft"]
    print(f"{'start':<12} {start['reward']:>8.4f} ±{start['reward_stderr']:.3f} {0.0:>8.3f} {'':>9}")
    for name in args.variants:
        r, (first, last, accuracy) = rows[name], curves[name]
        print(f"{name:<12} {r['reward']:>8.4f} ±{r['reward_stderr']:.3f} {r['kl']:>8.3f} {r['win_rate']:>9.3f} "
              f"{first:>24.4f} -> {last:.4f} {accuracy:>9.3f} {seconds[name]:>8.1f}")


if __name__ == "__main__":
    main()
