"""Train the embedded judge (src/posttrain/embedded/judge/, `model=embedded-judge`) on a 2-core CPU.

    python scripts/train_embedded_judge.py            # writes src/posttrain/embedded/judge/

RLAIF needs "an off-the-shelf LLM as a preference labeler" (seed 003); the embedded model is not one
(as a pairwise judge it is at chance). This script makes the package's stand-in: the embedded model
fine-tuned as a generative judge on `task:sentiment_judge` (two reviews of one film in the pairwise
judge's default template; the answer is the letter of the more positive one by the gold reward).

  1. `posttrain sft` on task:sentiment_judge from the embedded model (--steps packed steps);
  2. greedy verdict accuracy on the task's test split (films never seen in training);
  3. what RLAIF gets from it: `posttrain pairs` with labels=judge (position swap on, verdicts from the
     letter probabilities, `method=logprob`) on pairs of reviews *sampled from the embedded model* for
     test-split films, and `eval_reward_agreement`, the share of labels that agree with the gold
     reward; the same for the untrained embedded model as the judge (chance);
  4. saves the judge in bfloat16 (half the size; judging runs in float32 after loading).

Measured 2026-11-21 on the 2-core CPU VM (torch 2.13.0+cpu, 2 threads), seed 0, defaults (600 steps,
lr 1e-3, ~2 epochs of the 5,000 training pairs), 8.1 min in all (SFT 7.6 min); OUT/summary.json:

                                       untrained embedded   embedded-judge
  greedy verdict accuracy (test split)        0.000            0.835      (the untrained model never answers a letter)
  RLAIF label agreement with gold             0.490            0.687      (300 sampled pairs, position swap, logprob)

The sampled pairs include near-ties (no gap filter), which is why agreement there is lower than on
the task's clear-winner test split. scripts/judge_agreement.py trains a judge on its own shorter
template for comparison (0.750 on its held-out pairs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=8, help="packed rows of up to 512 tokens (~2 pairs each)")
    p.add_argument("--agreement-prompts", type=int, default=300, help="test-split films whose sampled review pairs are labelled")
    p.add_argument("--work", default="runs/embedded-judge")
    p.add_argument("--out", default=str(REPO / "src" / "posttrain" / "embedded" / "judge"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def label_agreement(judge_model: str, work: Path, prompts: int, seed: int) -> dict:
    """RLAIF label quality: the judge labels sampled review pairs; agreement of its labels with gold."""
    from posttrain.algorithms.pairs import PairsConfig, run_pairs
    from posttrain.config import build_config

    metrics = run_pairs(build_config(PairsConfig, {
        "model": "embedded", "dataset": "task:sentiment", "prompts": 8, "eval_prompts": prompts, "num_samples": 2,
        "max_new_tokens": 96, "labels": "judge", "judge": f"pairwise_judge:model={judge_model}:method=logprob",
        "output_dir": str(work), "overwrite_output_dir": True, "device": "cpu", "seed": seed}))
    return {k.removeprefix("eval_"): v for k, v in metrics.items() if k.startswith("eval_")}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from posttrain.algorithms.sft import SFTConfig, run_sft
    from posttrain.config import build_config
    from posttrain.eval.evaluate import EvalConfig, run_eval
    from posttrain.models.loading import load_causal_lm, load_tokenizer

    work, out, began = Path(args.work), Path(args.out), time.time()
    print(f"[1/4] SFT of the embedded model on task:sentiment_judge, {args.steps} steps")
    run_sft(build_config(SFTConfig, dict(
        model="embedded", dataset="task:sentiment_judge", output_dir=str(work / "sft"), max_steps=args.steps,
        learning_rate=args.lr, batch_size=args.batch_size, packing=True, warmup_ratio=0.05, logging_steps=50,
        overwrite_output_dir=True, seed=args.seed, device="cpu")))
    trained = str(work / "sft" / "final")
    sft_minutes = (time.time() - began) / 60

    print("[2/4] greedy verdict accuracy on the task's test split")
    accuracy = {who: run_eval(build_config(EvalConfig, dict(
        model=path, dataset="task:sentiment_judge:test", output_file=str(work / f"eval_{who}.json"), show_samples=0,
        device="cpu")))["score"] for who, path in (("base", "embedded"), ("trained", trained))}

    print("[3/4] RLAIF labels on sampled review pairs of test-split films (position swap, logprob)")
    agreement = {who: label_agreement(path, work / f"pairs_{who}", args.agreement_prompts, args.seed)
                 for who, path in (("base", "embedded"), ("trained", trained))}

    print(f"[4/4] saving the judge in bfloat16 to {out}")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    load_causal_lm(trained).to(torch.bfloat16).save_pretrained(tmp)
    load_tokenizer(trained).save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)

    summary = {"settings": vars(args), "sft_minutes": round(sft_minutes, 2), "verdict_accuracy": accuracy,
               "rlaif_label_agreement": {w: a["reward_agreement"] for w, a in agreement.items()},
               "rlaif_pairs": {w: a["pairs"] for w, a in agreement.items()}, "minutes": round((time.time() - began) / 60, 2)}
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
