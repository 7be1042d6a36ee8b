"""Pretrain the embedded default model (src/posttrain/embedded/model/) from nothing, on a 2-core CPU.

    python scripts/pretrain_embedded.py            # writes src/posttrain/embedded/model/

Measured 2026-11-21 on the 2-core CPU VM (torch 2.13.0+cpu, 2 threads), seed 0:
  corpus 52,000 conversations (40,000 arithmetic, 78 % of worked solutions correct; 12,000 reviews),
  about 4.3M tokens; vocab 1024; LlamaForCausalLM 3.48M parameters (hidden 256, 4 layers), 13.3 MB.
  pretraining ~4,800 tokens/s; the shipped checkpoint (step 650 of the 1300-step cosine schedule,
  2.58M tokens seen) takes about 9 minutes, the whole schedule about 18; train loss at step 650: 0.326.
  Learning curve, greedy held-out accuracy on 120 test problems (difficulty 1 / 2 / 3 / 4):
    step 325: 0.22 / 0.11 / 0.00 / 0.00    step 650: 0.52 / 0.31 / 0.23 / 0.00
    step 975: 0.91 / 0.94 / 0.77 / 0.06
  The shipped model, `python scripts/pretrain_embedded.py --skip-train` (200 test problems):
    arithmetic accuracy 0.290 (by difficulty 0.578 / 0.345 / 0.239 / 0.020), format 0.995;
    sentiment gold reward of 64 reviews sampled at temperature 1: mean 0.473, std 0.329, range 0.003-0.990.
  `posttrain quickstart` (150 packed SFT steps on the clean train split, 2 minutes) takes held-out
  accuracy from 29.0 % to 74.0 %.

What it does, in order, all a pure function of --seed:
  1. generates the synthetic corpus with the task code (posttrain.tasks.corpus): worked arithmetic
     of graded difficulty, some of it sloppy (slips carried through to a wrong answer; hard problems
     rarer than in the task), and movie reviews of every shade, as chat conversations drawn only from
     the train side of each task's split;
  2. trains the byte-level BPE tokenizer on it (posttrain.embedded.tokenizer_build);
  3. initialises a small LlamaForCausalLM and pretrains it on every token of the rendered
     conversations with posttrain's own training loop (`posttrain sft` with packing and
     completion_only_loss=false: the pretraining loss is the SFT loss over all tokens);
  4. copies the final model to --out with a generation config;
  5. evaluates with `posttrain.eval`: greedy held-out arithmetic accuracy, overall and by difficulty,
     and the gold reward of sentiment samples at temperature 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from posttrain.embedded import EMBEDDED_MODEL_DIR  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=EMBEDDED_MODEL_DIR)
    p.add_argument("--workdir", type=Path, default=ROOT / "runs" / "pretrain-embedded")
    p.add_argument("--n-arithmetic", type=int, default=40000)
    p.add_argument("--n-sentiment", type=int, default=12000)
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=704)
    p.add_argument("--steps", type=int, default=1300, help="length of the learning-rate schedule")
    p.add_argument("--ship-step", type=int, default=650,
                   help="ship this checkpoint, not the end of the schedule: stopping early leaves room for post-training")
    p.add_argument("--batch-size", type=int, default=8, help="packed rows of 512 tokens per step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-n", type=int, default=200)
    p.add_argument("--sentiment-samples", type=int, default=64)
    p.add_argument("--skip-train", action="store_true", help="only evaluate the model already in --out")
    return p.parse_args(argv)


def build_init(args) -> Path:
    """Corpus as JSONL, tokenizer, and the randomly initialised model, in the work directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from posttrain.embedded.tokenizer_build import build_tokenizer
    from posttrain.tasks.corpus import CorpusSpec, build_corpus

    args.workdir.mkdir(parents=True, exist_ok=True)
    docs = build_corpus(CorpusSpec(n_arithmetic=args.n_arithmetic, n_sentiment=args.n_sentiment), seed=args.seed)
    with open(args.workdir / "corpus.jsonl", "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps({"messages": doc["messages"]}, ensure_ascii=False) + "\n")
    correct = statistics.mean(d["correct"] for d in docs if "correct" in d)
    tok = build_tokenizer((m["content"] for d in docs[:12000] for m in d["messages"]), args.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
        max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(config)
    init = args.workdir / "init"
    model.save_pretrained(init)
    tok.save_pretrained(init)
    print(f"corpus: {len(docs)} conversations, arithmetic solutions correct {correct:.2f}; vocab {len(tok)}; "
          f"model {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters", flush=True)
    return init


def pretrain(args, init: Path) -> dict:
    from posttrain.algorithms.sft import SFTConfig, run_sft
    from posttrain.config import build_config

    cfg = build_config(SFTConfig, {
        "model": str(init), "dataset": str(args.workdir / "corpus.jsonl"), "eval_dataset": None,
        "output_dir": str(args.workdir / "run"), "overwrite_output_dir": True, "seed": args.seed,
        "packing": True, "completion_only_loss": False, "max_length": 512, "batch_size": args.batch_size,
        "learning_rate": args.lr, "warmup_steps": 40, "max_steps": args.steps, "weight_decay": 0.05,
        "adam_beta2": 0.98, "logging_steps": 50, "save_steps": args.ship_step, "keep_last": 0,
    })
    return run_sft(cfg)


def install(args, init: Path) -> None:
    """Write checkpoint step-<ship_step> as a save_pretrained directory with a generation config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(init)
    model = AutoModelForCausalLM.from_pretrained(init)
    state = torch.load(args.workdir / "run" / "checkpoints" / f"step-{args.ship_step}" / "model.pt", map_location="cpu")
    model.load_state_dict(state)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id, do_sample=False)
    if args.out.exists():
        shutil.rmtree(args.out)
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)


def evaluate_base(args) -> dict:
    from posttrain.methods.heldout import evaluate
    from posttrain.models import load_causal_lm, load_tokenizer
    from posttrain.tasks import get_task

    tok, model = load_tokenizer(str(args.out)), load_causal_lm(str(args.out))
    arithmetic = get_task("arithmetic")
    rows = arithmetic.rows("test", args.eval_n)
    by_difficulty = {}
    for d in sorted({r["difficulty"] for r in rows}):
        subset = [r for r in rows if r["difficulty"] == d]
        by_difficulty[d] = round(evaluate(model, tok, subset, {"score": arithmetic.score},
                                          max_new_tokens=arithmetic.default_max_new_tokens)["score"], 3)
    overall = evaluate(model, tok, rows, {"score": arithmetic.score, **arithmetic.scorers},
                       max_new_tokens=arithmetic.default_max_new_tokens)
    sentiment = get_task("sentiment")
    gold = sentiment_rewards(model, tok, sentiment, args.sentiment_samples, args.seed)
    return {"arithmetic_accuracy": round(overall["score"], 3), "format": round(overall["format"], 3),
            "by_difficulty": by_difficulty, **gold}


def sentiment_rewards(model, tok, task, n: int, seed: int) -> dict:
    """Gold reward of `n` reviews sampled at temperature 1: its spread is what RLHF can move."""
    from posttrain.data.tokenize import tokenize_prompt
    from posttrain.generation import SamplingParams, generate

    rows = task.rows("test", n)
    out = generate(model, tok, [tokenize_prompt(tok, r["prompt"]) for r in rows],
                   SamplingParams(max_new_tokens=task.default_max_new_tokens, temperature=1.0, seed=seed))
    gold = task.score([r["prompt"] for r in rows], out.texts)
    return {"sentiment_gold_mean": round(statistics.mean(gold), 3), "sentiment_gold_std": round(statistics.pstdev(gold), 3),
            "sentiment_gold_range": [round(min(gold), 3), round(max(gold), 3)], "sentiment_samples": out.texts[:3]}


def main(argv=None) -> dict:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(2)
    started = time.time()
    report = {}
    if not args.skip_train:
        init = build_init(args)
        final = pretrain(args, init)
        install(args, init)
        report["train_loss"] = round(final.get("loss", float("nan")), 4)
        report["train_minutes"] = round((time.time() - started) / 60, 1)
    report.update(evaluate_base(args))
    print(json.dumps(report, indent=2, ensure_ascii=False), flush=True)
    return report


if __name__ == "__main__":
    main()
