"""Learning from preferences on the embedded sentiment task: a reward model and DPO, end to end.

The IMDb experiment of seed 002 in miniature:

1. SFT the embedded model on the sentiment task's reviews (the "SFT model").
2. Sample two reviews for each training prompt from the SFT model, and score both with the gold
   reward r ∈ [0, 1] (the lexicon-and-negation scorer standing in for a sentiment classifier).
3. Label each pair by a Bradley–Terry draw: y1 ≻ y2 with probability p = σ(s·(r1 − r2)). The labels
   are noisy by design. No predictor can beat the Bayes-optimal accuracy E[max(p, 1 − p)] against
   them: that accuracy needs the gold reward itself. Held-out pairs are made the same way from the
   test prompts.
4. Train a reward model on the training pairs, and report its held-out accuracy against that bound.
5. Run DPO on the same pairs, starting from the SFT model. Report the mean gold reward of the
   policy's samples on held-out prompts, before (SFT) and after (DPO).

    python scripts/sentiment_preferences.py --out runs/sentiment-preferences

Measured on the 2-core CPU VM (defaults): see the README section "It learns: preferences on the
sentiment task", filled from this script's summary (also written to OUT/summary.json).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/sentiment-preferences")
    p.add_argument("--train-prompts", type=int, default=4000)
    p.add_argument("--test-prompts", type=int, default=500)
    p.add_argument("--bt-scale", type=float, default=5.0, help="s in P(y1 > y2) = sigmoid(s (r1 - r2))")
    p.add_argument("--sft-steps", type=int, default=100)
    p.add_argument("--rm-epochs", type=float, default=2.0)
    p.add_argument("--rm-lr", type=float, default=3e-4)
    p.add_argument("--dpo-epochs", type=float, default=1.0)
    p.add_argument("--dpo-beta", type=float, default=0.1)
    p.add_argument("--dpo-lr", type=float, default=1e-4)
    p.add_argument("--eval-samples", type=int, default=4, help="samples per held-out prompt for the mean gold reward")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def sample_pairs(model_dir: str, rows: list[dict], scale: float, seed: int) -> tuple[list[dict], list[float]]:
    """Two samples per prompt, labelled by a Bradley–Terry draw from the gold reward.
    Returns the pairs (chosen = the drawn winner) and each pair's p = P(winner ≻ loser) under the gold model."""
    from posttrain.data.tokenize import tokenize_prompt
    from posttrain.generation import SamplingParams, generate
    from posttrain.models.loading import load_causal_lm, load_tokenizer
    from posttrain.tasks.sentiment import gold_reward

    tokenizer, model = load_tokenizer(model_dir), load_causal_lm(model_dir)
    prompts = [tokenize_prompt(tokenizer, row["prompt"]) for row in rows]
    out = generate(model, tokenizer, prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=96, seed=seed))
    rewards = gold_reward(None, out.texts)
    rng = random.Random(seed)
    pairs, probabilities = [], []
    for i, row in enumerate(rows):
        (t1, t2), (r1, r2) = out.texts[2 * i:2 * i + 2], rewards[2 * i:2 * i + 2]
        if t1.strip() == t2.strip() or not t1.strip() or not t2.strip():
            continue
        p = 1 / (1 + math.exp(-scale * (r1 - r2)))
        first_wins = rng.random() < p
        chosen, rejected = (t1, t2) if first_wins else (t2, t1)
        pairs.append({"prompt": row["prompt"], "chosen": [{"role": "assistant", "content": chosen}],
                      "rejected": [{"role": "assistant", "content": rejected}],
                      "gold_chosen": max(r1, r2) if (r1 >= r2) == first_wins else min(r1, r2)})
        probabilities.append(p if first_wins else 1 - p)
    return pairs, probabilities


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def mean_gold(model_dir: str, out: Path, name: str, args) -> dict:
    from posttrain.config import build_config
    from posttrain.eval.evaluate import EvalConfig, run_eval

    report = run_eval(build_config(EvalConfig, {
        "model": model_dir, "dataset": f"task:sentiment:test:{args.test_prompts}", "temperature": 1.0,
        "num_samples": args.eval_samples, "seed": args.seed, "output_file": str(out / f"eval_{name}.json"), "show_samples": 2}))
    return report


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from posttrain.algorithms.dpo import DPOConfig, run_dpo
    from posttrain.algorithms.rm import RewardConfig, run_rm
    from posttrain.algorithms.sft import SFTConfig, run_sft
    from posttrain.config import build_config
    from posttrain.tasks import get_task

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    began, summary = time.time(), {"settings": vars(args)}
    task = get_task("sentiment")

    print(f"[1/5] SFT of the embedded model on task:sentiment, {args.sft_steps} steps")
    run_sft(build_config(SFTConfig, dict(model="embedded", dataset="task:sentiment", output_dir=str(out / "sft"),
                                         max_steps=args.sft_steps, learning_rate=5e-4, batch_size=8, packing=True,
                                         warmup_ratio=0.05, logging_steps=25, overwrite_output_dir=True, seed=args.seed)))
    sft_model = str(out / "sft" / "final")

    print("[2/5] sampling pairs from the SFT model and labelling them by Bradley-Terry draws from the gold reward")
    train_pairs, _ = sample_pairs(sft_model, task.rows("train", args.train_prompts), args.bt_scale, args.seed)
    test_pairs, test_p = sample_pairs(sft_model, task.rows("test", args.test_prompts), args.bt_scale, args.seed + 1)
    bayes = sum(max(p, 1 - p) for p in test_p) / len(test_p)
    gold_hits = sum(p > 0.5 for p in test_p) / len(test_p)  # the gold reward's own accuracy on the drawn labels
    train_file, test_file = write_jsonl(out / "train_pairs.jsonl", train_pairs), write_jsonl(out / "test_pairs.jsonl", test_pairs)
    summary["pairs"] = {"train": len(train_pairs), "test": len(test_pairs), "bayes_optimal_accuracy": bayes,
                        "gold_reward_accuracy_on_drawn_labels": gold_hits}
    print(f"      {len(train_pairs)} train / {len(test_pairs)} held-out pairs; Bayes-optimal accuracy {bayes:.3f} "
          f"(the gold reward itself scores {gold_hits:.3f} on these draws)")

    print("[3/5] reward model on the training pairs")
    rm = run_rm(build_config(RewardConfig, dict(model=sft_model, dataset=train_file, eval_dataset=test_file,
                                                output_dir=str(out / "rm"), num_epochs=args.rm_epochs, batch_size=16,
                                                learning_rate=args.rm_lr, warmup_ratio=0.05, logging_steps=25,
                                                overwrite_output_dir=True, seed=args.seed)))
    summary["reward_model"] = {"held_out_accuracy": rm["eval_accuracy"], "bayes_optimal_accuracy": bayes}
    print(f"      held-out accuracy {rm['eval_accuracy']:.3f} vs Bayes-optimal {bayes:.3f}")

    print("[4/5] DPO on the same pairs from the SFT model")
    dpo = run_dpo(build_config(DPOConfig, dict(model=sft_model, dataset=train_file, eval_dataset=test_file,
                                               output_dir=str(out / "dpo"), num_epochs=args.dpo_epochs, batch_size=16,
                                               beta=args.dpo_beta, learning_rate=args.dpo_lr, warmup_ratio=0.05,
                                               logging_steps=25, overwrite_output_dir=True, seed=args.seed)))
    summary["dpo_training"] = {k: v for k, v in dpo.items() if k.startswith(("eval_", "rewards/", "logps/"))}

    print("[5/5] mean gold reward of samples on held-out prompts: SFT vs DPO")
    before, after = mean_gold(sft_model, out, "sft", args), mean_gold(str(out / "dpo" / "final"), out, "dpo", args)
    summary["gold_reward"] = {"sft": before["gold"], "dpo": after["gold"]}
    summary["minutes"] = (time.time() - began) / 60
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nreward model: held-out accuracy {rm['eval_accuracy']:.3f} (Bayes-optimal {bayes:.3f}, chance 0.5)")
    print(f"DPO: mean gold reward {before['gold']:.3f} (SFT) -> {after['gold']:.3f} (DPO)")
    print(f"done in {summary['minutes']:.1f} min; {out / 'summary.json'}")


if __name__ == "__main__":
    main()
