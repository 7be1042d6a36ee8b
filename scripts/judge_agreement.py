"""Does an LLM judge agree with the gold reward? A generative reward model on the embedded sentiment task.

The embedded model (3.5M parameters, pretrained on the synthetic arithmetic and review corpus) is not
an instruction follower, so asking it "which review is more positive?" gives chance-level verdicts.
The honest way to get a judge out of it is a *generative reward model* (seed 004: a model trained to
output a preference decision by next-token prediction; seed 003's SLiC-HF ranker, target "A"/"B"):

1. Judge-formatted training pairs: two reviews of one train-split film from the task's review
   grammar, shown in a random order in the template `TEMPLATE` below; the target is the letter of
   the review with the higher gold reward (pairs whose gold rewards differ by < `--min-gap` are skipped).
2. SFT of the embedded model on them with `posttrain.algorithms.sft` (completion-only loss: "A"/"B").
3. Held-out pairs: two reviews *sampled from the embedded model* (temperature 1) for each test-split
   film (titles never seen in step 1), scored by the gold reward; pairs with equal gold are skipped.
4. Each judge gives P(a ≻ b) with position swap (`PairwiseJudge.preferences`: both orders, a win counts
   only when the two orders agree). Agreement = the fraction of pairs where the judge prefers the
   review with the higher gold reward; a tie (the orders disagreed) or an unparseable verdict is
   settled by a fair coin (seeded), so every pair is one Bernoulli trial, chance is 0.5, and the 95%
   interval is Wilson's binomial interval. The base embedded model is judged the same way.
5. RLAIF: `rlaif.label_pairs` turns the held-out pairs into preference rows with the trained judge;
   it reports how many were labelled and how often `chosen` has the higher gold reward.

    OMP_NUM_THREADS=1 python scripts/judge_agreement.py --threads 1 --out runs/judge-agreement

Measured on the 2-core CPU VM with that command (defaults: 4000 training pairs, 2 epochs, lr 5e-4; 400 held-out
pairs), 8.7 min in all (SFT 7 min), also in OUT/summary.json and docs/judges.md:

    judge (position swap on)           agreement  95% CI (Wilson)   ties  unparsed
    base embedded model, generate        0.482    [0.434, 0.531]       0    400
    base embedded model, logprob         0.495    [0.446, 0.544]       0      0
    trained judge, generate              0.688    [0.640, 0.731]     114      0   (decisive verdicts: 0.808)
    trained judge, logprob               0.750    [0.705, 0.790]       0      0

    trained judge (logprob) by |gold(a) - gold(b)|: <0.1: 0.574 (68 pairs), 0.1-0.3: 0.682 (148),
    0.3-0.6: 0.853 (109), >=0.6: 0.893 (75)
    RLAIF labels from the trained judge: 286 labelled, 114 ties dropped; chosen has the higher gold reward in 0.808
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

TEMPLATE = """Which review is more positive?

Review A:
{completion_a}

Review B:
{completion_b}

Answer A or B."""
GAP_BINS = (0.0, 0.1, 0.3, 0.6, 1.0)  # agreement is also reported by |gold(a) - gold(b)|


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/judge-agreement")
    p.add_argument("--train-pairs", type=int, default=4000)
    p.add_argument("--test-prompts", type=int, default=400)
    p.add_argument("--min-gap", type=float, default=0.05, help="skip training pairs whose gold rewards differ by less")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=8, help="packed rows of up to 512 tokens (~3 pairs each)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def training_rows(n: int, min_gap: float, seed: int) -> list[dict]:
    """SFT rows: the filled template as the user turn, the letter of the more positive review as the answer."""
    from posttrain.data.judge_format import fill
    from posttrain.tasks import get_task
    from posttrain.tasks.sentiment import gold_reward, write_review

    rng = random.Random(seed)
    rows, titles = [], [row["title"] for row in get_task("sentiment").rows("train", 5000)]
    while len(rows) < n:
        title = rng.choice(titles)
        a, b = write_review(rng, title), write_review(rng, title)
        ra, rb = gold_reward(None, [a, b])
        if abs(ra - rb) < min_gap:
            continue
        rows.append({"prompt": [{"role": "user", "content": fill(TEMPLATE, completion_a=a, completion_b=b)}],
                     "completion": [{"role": "assistant", "content": "A" if ra > rb else "B"}]})
    return rows


def held_out_pairs(n_prompts: int, seed: int) -> list[dict]:
    """Two reviews sampled from the embedded model per test-split film, with their gold rewards."""
    from posttrain.data.tokenize import tokenize_prompt
    from posttrain.generation import SamplingParams, generate
    from posttrain.models.loading import load_causal_lm, load_tokenizer
    from posttrain.tasks import get_task
    from posttrain.tasks.sentiment import gold_reward

    rows = get_task("sentiment").rows("test", n_prompts)
    tokenizer, model = load_tokenizer("embedded"), load_causal_lm("embedded")
    out = generate(model, tokenizer, [tokenize_prompt(tokenizer, r["prompt"]) for r in rows],
                   SamplingParams(n=2, temperature=1.0, max_new_tokens=96, seed=seed))
    gold = gold_reward(None, out.texts)
    pairs = []
    for i, row in enumerate(rows):
        (a, b), (ra, rb) = out.texts[2 * i:2 * i + 2], gold[2 * i:2 * i + 2]
        if ra != rb and a.strip() and b.strip():
            pairs.append({"prompt": row["prompt"], "completions": [a, b], "gold": [ra, rb]})
    return pairs


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's 95% score interval for a binomial proportion."""
    p = successes / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def agreement(judge, pairs: list[dict], seed: int) -> dict:
    """Agreement of the judge's position-swapped preference with the gold ordering (module docstring, step 4)."""
    began = time.time()
    prefs = judge.preferences([p["prompt"] for p in pairs], [p["completions"][0] for p in pairs],
                              [p["completions"][1] for p in pairs])
    coin = random.Random(seed)
    hits, ties, unjudged, decisive_hits = [], 0, 0, 0
    for pair, p in zip(pairs, prefs):
        a_better = pair["gold"][0] > pair["gold"][1]
        if p is None or p == 0.5:
            ties += p is not None
            unjudged += p is None
            hits.append(coin.random() < 0.5)
        else:
            hits.append((p > 0.5) == a_better)
            decisive_hits += (p > 0.5) == a_better
    n, decisive = len(pairs), len(pairs) - ties - unjudged
    low, high = wilson(sum(hits), n)
    by_gap = {}
    for lo, hi in zip(GAP_BINS, GAP_BINS[1:]):
        inside = [h for h, pair in zip(hits, pairs) if lo <= abs(pair["gold"][0] - pair["gold"][1]) < hi]
        by_gap[f"{lo}-{hi}"] = {"pairs": len(inside), "agreement": sum(inside) / len(inside) if inside else None}
    return {"agreement": sum(hits) / n, "ci95": [low, high], "pairs": n, "ties": ties, "unjudged": unjudged,
            "decisive_agreement": decisive_hits / decisive if decisive else None, "by_gold_gap": by_gap,
            "seconds": time.time() - began}


def report(name: str, r: dict) -> str:
    decisive = "n/a" if r["decisive_agreement"] is None else f"{r['decisive_agreement']:.3f}"
    return (f"{name:<34} agreement {r['agreement']:.3f}  95% CI [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]  "
            f"ties {r['ties']}, unparsed {r['unjudged']} of {r['pairs']}; decisive {decisive}  ({r['seconds']:.0f}s)")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from posttrain.algorithms.sft import SFTConfig, run_sft
    from posttrain.config import build_config
    from posttrain.models.loading import load_causal_lm, load_tokenizer
    from posttrain.rewards.judge import PairwiseJudge
    from posttrain.rewards.rlaif import label_pairs

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    began, summary = time.time(), {"settings": vars(args)}
    (out / "template.txt").write_text(TEMPLATE, encoding="utf-8")

    print(f"[1/4] {args.train_pairs} judge-formatted training pairs from the review grammar (train-split films)")
    rows = training_rows(args.train_pairs, args.min_gap, args.seed)
    (out / "judge_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"      'A' is the answer in {sum(r['completion'][0]['content'] == 'A' for r in rows) / len(rows):.3f} of them")

    print("[2/4] held-out pairs: two reviews sampled from the embedded model per test-split film, gold-scored")
    pairs = held_out_pairs(args.test_prompts, args.seed + 1)
    print(f"      {len(pairs)} pairs")

    print(f"[3/4] SFT of the embedded model on the judge pairs ({args.epochs} epoch)")
    t = time.time()
    run_sft(build_config(SFTConfig, dict(model="embedded", dataset=str(out / "judge_train.jsonl"),
                                         output_dir=str(out / "judge"), num_epochs=args.epochs, learning_rate=args.lr,
                                         batch_size=args.batch_size, packing=True, warmup_ratio=0.05, logging_steps=50,
                                         overwrite_output_dir=True, seed=args.seed, device="cpu")))
    summary["sft_minutes"] = (time.time() - t) / 60

    print("[4/4] agreement with the gold ordering on the held-out pairs (position swap on)")
    results = {}
    for who, path in (("base", "embedded"), ("trained", str(out / "judge" / "final"))):
        model, tokenizer = load_causal_lm(path), load_tokenizer(path)
        for method in ("generate", "logprob"):
            judge = PairwiseJudge(model, tokenizer, TEMPLATE, method=method, max_new_tokens=4, batch_size=32)
            results[f"{who}/{method}"] = r = agreement(judge, pairs, args.seed)
            print("      " + report(f"{who} embedded model, {method}", r))
    print("      trained judge (logprob) by gold gap: " + ", ".join(
        f"|Δ| {gap}: {v['agreement']:.3f} ({v['pairs']})" for gap, v in r["by_gold_gap"].items() if v["pairs"]))
    judge = PairwiseJudge(model, tokenizer, TEMPLATE, max_new_tokens=4, batch_size=32)  # the trained judge
    labelled = label_pairs(judge, [{"prompt": p["prompt"], "completions": p["completions"], "index": i}
                                   for i, p in enumerate(pairs)])
    right = 0
    for row in labelled:
        (a, _), (ra, rb) = pairs[row["index"]]["completions"], pairs[row["index"]]["gold"]
        right += (ra > rb) == (row["chosen"] == a)
    summary["rlaif"] = {**labelled.counts, "chosen_has_higher_gold": right / max(1, len(labelled))}
    summary["results"], summary["minutes"] = results, (time.time() - began) / 60
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nRLAIF labels (trained judge): {labelled.counts}; chosen has the higher gold reward in "
          f"{summary['rlaif']['chosen_has_higher_gold']:.3f} of the labelled rows")
    print(f"done in {summary['minutes']:.1f} min; {out / 'summary.json'}")


if __name__ == "__main__":
    main()
