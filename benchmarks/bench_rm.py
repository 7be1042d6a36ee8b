"""Reward-model training throughput: posttrain vs TRL's RewardTrainer, same model, data and settings.

Both train a reward model (AutoModelForSequenceClassification, num_labels=1, head initialised from
the same seed) from the embedded model on the same preference pairs, with the Bradley-Terry loss,
fp32 on CPU, AdamW, the same batch size (pairs per step), max_length, learning rate, schedule,
gradient clipping and number of steps, no evaluation, no checkpoints, no gradient checkpointing.

The pairs come from the embedded sentiment task: for each review prompt, the task's review and a
second review of the same film, the one with the higher gold reward as `chosen` (conversational,
so both frameworks tokenize the same chat-template text to the same tokens).

Throughput is preference pairs per second of wall-clock time between consecutive optimizer steps
(the whole loop: data, forward, backward, optimizer, logging), the median over timed windows after
warm-up steps; the three trainers run in turn, `--rounds` times, so load from other jobs on a shared
machine falls on all of them. posttrain runs twice: padded batches (the default) and `packing=true` (a batch's
sequences packed into rows with attention kept inside each sequence: the same rewards without the
work on padding). TRL's RewardTrainer has no padding-free mode, so its batches are padded.

    python benchmarks/bench_rm.py --threads 1
    python benchmarks/bench_rm.py --threads 1 --warmup 1 --window 2 --windows 2   # quick look

Measured 2026-11-21 on the otherwise idle 2-core AMD EPYC VM (three trainers in turn, 3 rounds,
9 windows of 5 steps each; settings: embedded model as a reward model, fp32 CPU, 1000 sentiment
pairs, batch 8 pairs/step, max_length 256, lr 1e-4 linear with 3 warm-up steps, max_grad_norm 1.0,
AdamW, no eval, 18 steps):

    $ python benchmarks/bench_rm.py --threads 1 --rounds 3
      posttrain                25.2 pairs/s  ratio to TRL 1.24x  max |loss - TRL loss| over steps 1.2e-07
                               positions computed per pair 174.0 (real tokens of both sequences: 138.3)
      posttrain packing=true   39.3 pairs/s  ratio to TRL 1.93x  max |loss - TRL loss| over steps 1.2e-07
                               positions computed per pair 114.0 (real tokens of both sequences: 138.3)
      TRL RewardTrainer        20.4 pairs/s  ratio to TRL 1.00x
    $ python benchmarks/bench_rm.py --threads 2 --rounds 3
      posttrain                47.3 pairs/s  ratio to TRL 1.24x
      posttrain packing=true   65.3 pairs/s  ratio to TRL 1.71x
      TRL RewardTrainer        38.2 pairs/s  ratio to TRL 1.00x

The per-step losses of all three agree to ~1e-7: same pairs, same order, same head initialisation,
same objective. Where the speed comes from, the model being small and the work matmuls and
memory-bound element-wise ops, both proportional to the positions computed:
- packing: each prompt is computed once for both completions and nothing is padded, 114 instead of
  174 positions per pair (data/shared_prefix.py);
- the pooled last layer (models/last_layer.py): the score is read at one position per sequence,
  so the last decoder layer computes queries, attention, MLP and norms only there (its keys and
  values everywhere), about a fifth of a 4-layer model's work. This alone makes the padded run 1.24x.
(Before the pooled last layer the same runs gave packed 1.46x / 1.48x, padded 0.98x / 1.00x.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from timing import window_rates  # noqa: E402 (benchmarks/ is on sys.path when run as a script)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=1000, help="preference pairs built from the sentiment task")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8, help="pairs per optimizer step")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps (also lr warm-up steps)")
    p.add_argument("--window", type=int, default=5, help="steps per timed window")
    p.add_argument("--windows", type=int, default=3, help="timed windows (median reported)")
    p.add_argument("--rounds", type=int, default=2, help="run the three trainers in turn this many times (the median is "
                   "over all windows of all rounds, so load from other jobs falls on all of them)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (both frameworks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    args.steps = args.warmup + args.window * args.windows
    return args


def sentiment_pairs(n: int, seed: int) -> list[dict]:
    """Two reviews per prompt, ordered by the task's gold reward (ties skipped)."""
    from posttrain.tasks import get_task
    from posttrain.tasks.sentiment import gold_reward, write_review

    rng = random.Random(seed)
    pairs = []
    for row in get_task("sentiment").rows("train", 2 * n):
        a = row["completion"]
        b = [{"role": "assistant", "content": write_review(rng, row["title"])}]
        ra, rb = gold_reward([row["prompt"]] * 2, [a, b])
        if ra != rb:
            chosen, rejected = (a, b) if ra > rb else (b, a)
            pairs.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected})
        if len(pairs) == n:
            break
    return pairs


# --------------------------------------------------------------------------------------- runners


def run_posttrain(model_dir: str, data_file: str, args, workdir: Path, packing: bool) -> dict:
    from posttrain.algorithms.rm import RewardConfig, RewardModeling, build_reward_model, load_items
    from posttrain.config import build_config
    from posttrain.models.loading import load_tokenizer
    from posttrain.train.loop import OfflineSource, train

    out = workdir / f"posttrain-{'packed' if packing else 'padded'}"
    config = build_config(RewardConfig, dict(
        model=model_dir, dataset=data_file, output_dir=str(out), overwrite_output_dir=True, packing=packing,
        max_length=args.max_length, batch_size=args.batch_size, learning_rate=args.lr, lr_scheduler="linear",
        warmup_steps=args.warmup, max_steps=args.steps, logging_steps=1, seed=args.seed, max_grad_norm=1.0,
        device="cpu", reward_offset="none"))
    tokenizer = load_tokenizer(model_dir)
    algorithm = RewardModeling(tokenizer.pad_token_id, packing=packing)
    items, _ = load_items(tokenizer, data_file, None, config)
    stamps: list[float] = []
    tokens: list[int] = []
    positions: list[int] = []

    class TimedSource(OfflineSource):
        def next_step(self, step):
            stamps.append(time.perf_counter())
            batches = super().next_step(step)
            tokens.append(sum(b["num_tokens"] for b in batches))
            positions.append(sum(b["input_ids"].numel() for b in batches))
            return batches

    source = TimedSource(items, algorithm.collate, config.batch_size, 1, config.seed, what="pairs")
    train(config, build_model=lambda: build_reward_model(config, tokenizer.pad_token_id), tokenizer=tokenizer,
          algorithm=algorithm, source=source)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # the end of the last step: its start plus its own duration (tokens / tokens_per_second)
    stamps.append(stamps[-1] + tokens[-1] / records[-1]["tokens_per_second"])
    return {"pairs_s": window_rates(stamps, [args.batch_size] * args.steps, args), "loss": [r["loss"] for r in records],
            "positions_per_pair": sum(positions) / (args.batch_size * len(positions)),
            "tokens_per_pair": sum(tokens) / (args.batch_size * len(tokens))}


def run_trl(model_dir: str, rows: list[dict], args, workdir: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            stamps.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())

    config = RewardConfig(
        output_dir=str(workdir / "trl-run"), max_length=args.max_length, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=args.warmup, max_steps=args.steps,
        logging_steps=1, seed=args.seed, max_grad_norm=1.0, bf16=False, fp16=False, use_cpu=True,
        gradient_checkpointing=False, report_to="none", save_strategy="no", eval_strategy="no",
        dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = RewardTrainer(model=model_dir, args=config, train_dataset=Dataset.from_list(rows),
                            processing_class=AutoTokenizer.from_pretrained(model_dir))
    trainer.add_callback(Clock())
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"pairs_s": window_rates(stamps, [args.batch_size] * args.steps, args), "loss": losses}


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    args = parse_args()
    print("$ " + shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]))
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    import trl

    from posttrain.embedded import EMBEDDED_MODEL_DIR

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model_dir = str(EMBEDDED_MODEL_DIR)
    rows = sentiment_pairs(args.pairs, args.seed)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}; "
          f"{os.cpu_count()} CPU cores, {args.threads} threads; load average before start {os.getloadavg()[0]:.2f}")
    print(f"settings: embedded model as a reward model, fp32 CPU, {len(rows)} sentiment pairs, batch {args.batch_size} pairs/step, "
          f"max_length {args.max_length}, lr {args.lr} (linear, {args.warmup} warm-up steps), max_grad_norm 1.0, AdamW, "
          f"no eval, {args.steps} steps: {args.warmup} untimed + {args.windows} windows x {args.window}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data_file = workdir / "pairs.jsonl"
        data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
        for _ in range(args.rounds):
            for label, run in (("posttrain", lambda: run_posttrain(model_dir, str(data_file), args, workdir, packing=False)),
                               ("posttrain packing=true", lambda: run_posttrain(model_dir, str(data_file), args, workdir, packing=True)),
                               ("TRL RewardTrainer", lambda: run_trl(model_dir, rows, args, workdir))):
                r = run()
                if label in results:
                    results[label]["pairs_s"] += r["pairs_s"]
                else:
                    results[label] = r
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **results}, indent=1))


def report(results: dict, args) -> None:
    trl_median = statistics.median(results["TRL RewardTrainer"]["pairs_s"])
    trl_loss = results["TRL RewardTrainer"]["loss"]
    for label, r in results.items():
        med = statistics.median(r["pairs_s"])
        gap = max(abs(a - b) for a, b in zip(r["loss"], trl_loss))
        print(f"  {label:<23} {med:7.1f} pairs/s  (windows: {', '.join(f'{w:.1f}' for w in r['pairs_s'])})  "
              f"ratio to TRL {med / trl_median:.2f}x  loss step 1 / last {r['loss'][0]:.4f} / {r['loss'][-1]:.4f}  "
              f"max |loss - TRL loss| over steps {gap:.1e}")
        if "positions_per_pair" in r:
            print(f"  {'':<23} positions computed per pair {r['positions_per_pair']:.1f} "
                  f"(real tokens of both sequences: {r['tokens_per_pair']:.1f})")


if __name__ == "__main__":
    main()
