"""Online DPO per batch, measured: does the policy learn the embedded sentiment task's gold reward?

Each preset trains the shipped embedded model (no SFT: it already writes reviews of every shade) with
`posttrain online_dpo` on task:sentiment's train prompts: every step samples 2 reviews for each of 16
fresh prompts from the current policy, the task's gold reward picks the chosen one, and one optimizer
step follows. Then the `compare` stage samples 2 reviews for each of 100 held-out films from every
policy (temperature 1) and reports the gold reward, the sequence KL to the starting model and the win
rate against it. The curve columns are the mean gold reward of the training samples (fresh prompts,
on-policy) over the first and the last 5 steps.

    python benchmarks/bench_online_dpo.py                              # online_dpo and bpo, 40 steps each
    python benchmarks/bench_online_dpo.py --presets online_ipo --steps 20 --lr 5e-4

On an idle 2-core CPU the default takes about 2.5 minutes (--threads 1).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["online_dpo", "bpo"])
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
    for preset in args.presets:
        began = time.perf_counter()
        config = posttrain.config_for("online_dpo", preset=preset, dataset="task:sentiment", reward_funcs=["task"],
                                      max_steps=args.steps, prompts_per_step=16, batch_size=32, max_new_tokens=48,
                                      learning_rate=args.lr, logging_steps=5, output_dir=str(root / preset), device="cpu")
        posttrain.run(config)
        seconds[preset] = time.perf_counter() - began
        records = [json.loads(line) for line in (root / preset / "metrics.jsonl").read_text().splitlines()]
        curves[preset] = (records[0]["reward/mean"], records[-1]["reward/mean"], records[-1]["rewards/accuracies"])
    compare = posttrain.config_for("compare", reference="embedded", dataset="task:sentiment", prompts=100, samples_per_prompt=2,
                                   policies=[f"{p}={root / p / 'final'}" for p in args.presets], output_dir=str(root / "compare"),
                                   device="cpu")
    rows = {r["policy"]: r for r in posttrain.run(compare)["evaluations"]}
    print(f"\nonline_dpo on task:sentiment, embedded model, {args.steps} steps x 16 prompts x 2 samples, lr {args.lr:g}")
    print(f"{'policy':<12} {'held-out gold':>14} {'KL(seq)':>8} {'win rate':>9} {'train reward first->last 5 steps':>34} {'pair acc':>9} {'seconds':>8}")
    start = rows["sft"]
    print(f"{'start':<12} {start['reward']:>8.4f} ±{start['reward_stderr']:.3f} {0.0:>8.3f} {'':>9}")
    for preset in args.presets:
        r, (first, last, accuracy) = rows[preset], curves[preset]
        print(f"{preset:<12} {r['reward']:>8.4f} ±{r['reward_stderr']:.3f} {r['kl']:>8.3f} {r['win_rate']:>9.3f} "
              f"{first:>24.4f} -> {last:.4f} {accuracy:>9.3f} {seconds[preset]:>8.1f}")


if __name__ == "__main__":
    main()
