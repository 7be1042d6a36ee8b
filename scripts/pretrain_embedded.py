"""Pretrain the embedded default model (src/posttrain/embedded/model/) from nothing, on a 2-core CPU.

RESULTS_PLACEHOLDER

What it does, in order, all reproducible from --seed:
  1. generates the synthetic corpus with the task code (posttrain.embedded.corpus): noisy worked
     arithmetic (sloppy solutions, hard problems rarer) and movie reviews, as chat conversations;
  2. trains the byte-level BPE tokenizer on it (posttrain.embedded.tokenizer_build);
  3. pretrains a small LlamaForCausalLM on every token of the rendered conversations;
  4. writes config, weights, tokenizer and generation config to --out;
  5. evaluates: greedy held-out arithmetic accuracy (overall and by difficulty) and the gold reward
     of sentiment samples at temperature 1; with --check-sft, also a short clean SFT on the task's
     train split and the accuracy after it (that model is not saved).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from posttrain.embedded import EMBEDDED_MODEL_DIR  # noqa: E402
from posttrain.embedded.corpus import CorpusSpec, build_corpus  # noqa: E402
from posttrain.embedded.tokenizer_build import build_tokenizer  # noqa: E402
from posttrain.tasks import get_task  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=EMBEDDED_MODEL_DIR)
    p.add_argument("--threads", type=int, default=2)
    # corpus and tokenizer
    p.add_argument("--n-arithmetic", type=int, default=20000)
    p.add_argument("--n-sentiment", type=int, default=6000)
    p.add_argument("--sloppy-fraction", type=float, default=0.3)
    p.add_argument("--slip-prob", type=float, default=0.3)
    p.add_argument("--difficulty-weights", default="0.4,0.3,0.2,0.1", help="corpus weights of difficulties 1-4")
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--max-len", type=int, default=256)
    # model
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=704)
    # optimisation
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-tokens", type=int, default=2048, help="tokens (incl. padding) per step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.05)
    # evaluation
    p.add_argument("--eval-n", type=int, default=200)
    p.add_argument("--curve-every", type=int, default=0, help="every N steps print greedy accuracy on --curve-n test problems")
    p.add_argument("--curve-n", type=int, default=80)
    p.add_argument("--sentiment-samples", type=int, default=64)
    p.add_argument("--check-sft", action="store_true", help="also run a short clean SFT and report accuracy after it")
    p.add_argument("--sft-steps", type=int, default=200)
    p.add_argument("--sft-batch", type=int, default=16)
    p.add_argument("--sft-lr", type=float, default=3e-4)
    p.add_argument("--skip-save", action="store_true", help="evaluate only; do not write --out")
    return p.parse_args(argv)


# ------------------------------------------------------------------ data


def encode_chat(tok, messages: list[dict]) -> list[int]:
    return tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]


def length_batches(lengths: list[int], batch_tokens: int, rng: random.Random) -> list[list[int]]:
    """Index batches of similar lengths, each at most batch_tokens long once padded; shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches, current = [], []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def collate(seqs: list[list[int]], pad_id: int, starts: list[int] | None = None):
    """Right-padded input ids, attention mask and labels (-100 on padding and before `starts`)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s)
        mask[row, : len(s)] = 1
        start = starts[row] if starts else 0
        labels[row, start : len(s)] = torch.tensor(s[start:])
    return ids, mask, labels


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_steps(model, batches_of, steps: int, lr: float, warmup: int, weight_decay: float, log_every: int = 50,
                tag: str = "pretrain", on_log=None):
    """A plain AdamW loop over `batches_of(step) -> (ids, mask, labels)`; returns the per-step losses.

    `on_log(step)`, when given, runs (in eval mode, outside the timing) after each log line."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95))
    model.train()
    losses, tokens, t0 = [], 0, time.time()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        ids, mask, labels = batches_of(step)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        tokens += int(mask.sum())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            recent = statistics.mean(losses[-log_every:])
            elapsed = time.time() - t0
            print(f"[{tag}] step {step + 1}/{steps} loss {recent:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{tokens / elapsed:.0f} tok/s {elapsed:.0f}s", flush=True)
            if on_log is not None:
                pause = time.time()
                model.eval()
                on_log(step + 1)
                model.train()
                t0 += time.time() - pause
    model.eval()
    return losses


# ------------------------------------------------------------------ evaluation


@torch.no_grad()
def generate(model, tok, prompts: list[list[dict]], max_new_tokens: int, temperature: float = 0.0, batch_size: int = 50) -> list[str]:
    """Plain `model.generate` with left padding; greedy when temperature == 0."""
    side, tok.padding_side = tok.padding_side, "left"
    out = []
    try:
        for i in range(0, len(prompts), batch_size):
            texts = [tok.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts[i : i + batch_size]]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            kwargs = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {"do_sample": False}
            seqs = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id,
                                  pad_token_id=tok.pad_token_id, **kwargs)
            out += tok.batch_decode(seqs[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tok.padding_side = side
    return out


def eval_arithmetic(model, tok, n: int) -> dict:
    task = get_task("arithmetic")
    rows = task.rows("test", n)
    completions = generate(model, tok, [r["prompt"] for r in rows], task.default_max_new_tokens)
    acc = task.scorers["accuracy"](None, completions, answer=[r["answer"] for r in rows])
    fmt = task.scorers["format"](None, completions)
    result = {"accuracy": statistics.mean(acc), "format": statistics.mean(fmt), "by_difficulty": {}}
    for d in sorted({r["difficulty"] for r in rows}):
        picked = [a for a, r in zip(acc, rows) if r["difficulty"] == d]
        result["by_difficulty"][d] = round(statistics.mean(picked), 3)
    result["example"] = completions[0]
    return result


def eval_sentiment(model, tok, n: int, seed: int) -> dict:
    task = get_task("sentiment")
    rows = task.rows("test", n)
    torch.manual_seed(seed)
    completions = generate(model, tok, [r["prompt"] for r in rows], task.default_max_new_tokens, temperature=1.0)
    gold = task.score(None, completions)
    return {"gold_mean": statistics.mean(gold), "gold_std": statistics.pstdev(gold),
            "gold_min": min(gold), "gold_max": max(gold), "examples": completions[:3]}


def sft_check(model, tok, args) -> tuple[dict, float]:
    """Clean SFT on the arithmetic train split (completion-only loss) on a copy; greedy accuracy after."""
    model = copy.deepcopy(model)
    rows = get_task("arithmetic").rows("train", args.sft_steps * args.sft_batch)
    seqs, starts = [], []
    for r in rows:
        prompt = tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
        starts.append(len(tok(prompt, add_special_tokens=False)["input_ids"]))
        seqs.append(encode_chat(tok, r["prompt"] + r["completion"]))

    def batches_of(step):
        idx = range(step * args.sft_batch, (step + 1) * args.sft_batch)
        return collate([seqs[i] for i in idx], tok.pad_token_id, [starts[i] for i in idx])

    t0 = time.time()
    torch.manual_seed(args.seed)
    train_steps(model, batches_of, args.sft_steps, args.sft_lr, warmup=20, weight_decay=0.0, log_every=25, tag="sft")
    return eval_arithmetic(model, tok, args.eval_n), time.time() - t0


# ------------------------------------------------------------------ main


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    t_start = time.time()

    weights = [float(w) for w in args.difficulty_weights.split(",")]
    spec = CorpusSpec(n_arithmetic=args.n_arithmetic, n_sentiment=args.n_sentiment,
                      difficulty_weights=dict(zip((1, 2, 3, 4), weights)),
                      sloppy_fraction=args.sloppy_fraction, slip_prob=args.slip_prob)
    docs = build_corpus(spec, args.seed)
    tok = build_tokenizer((m["content"] for d in docs for m in d["messages"]), args.vocab_size)
    seqs = [s for s in (encode_chat(tok, d["messages"]) for d in docs) if len(s) <= args.max_len]
    n_tokens = sum(map(len, seqs))
    correct = [d["correct"] for d in docs if "correct" in d]
    print(f"corpus: {len(seqs)} conversations, {n_tokens} tokens, arithmetic solutions correct "
          f"{statistics.mean(correct):.2f}; vocab {len(tok)}; {time.time() - t_start:.0f}s", flush=True)

    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.heads, intermediate_size=args.intermediate,
        max_position_embeddings=512, rope_theta=10000.0, tie_word_embeddings=True, rms_norm_eps=1e-5,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters", flush=True)

    batch_rng = random.Random(f"batches-{args.seed}")
    lengths = [len(s) for s in seqs]
    schedule: list[list[int]] = []

    def batches_of(step):
        while step >= len(schedule):
            schedule.extend(length_batches(lengths, args.batch_tokens, batch_rng))
        return collate([seqs[i] for i in schedule[step]], tok.pad_token_id)

    t_train = time.time()
    def curve(step):
        if args.curve_every and step % args.curve_every == 0:
            r = eval_arithmetic(model, tok, args.curve_n)
            print(f"[curve] step {step} accuracy {r['accuracy']:.3f} format {r['format']:.2f} {r['by_difficulty']}", flush=True)

    losses = train_steps(model, batches_of, args.steps, args.lr, args.warmup, args.weight_decay, on_log=curve)
    train_s = time.time() - t_train
    epochs = sum(len(schedule[i]) for i in range(args.steps)) / len(seqs)

    if not args.skip_save:
        args.out.mkdir(parents=True, exist_ok=True)
        model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                                   pad_token_id=tok.pad_token_id, do_sample=False)
        model.save_pretrained(args.out)
        tok.save_pretrained(args.out)

    t_eval = time.time()
    report = {
        "seed": args.seed,
        "train_seconds": round(train_s),
        "epochs": round(epochs, 2),
        "final_train_loss": round(statistics.mean(losses[-50:]), 4),
        "arithmetic": eval_arithmetic(model, tok, args.eval_n),
        "sentiment": eval_sentiment(model, tok, args.sentiment_samples, args.seed),
    }
    report["eval_seconds"] = round(time.time() - t_eval)
    report["total_seconds"] = round(time.time() - t_start)
    if args.check_sft:
        report["sft"], sft_s = sft_check(model, tok, args)
        report["sft"].update(steps=args.sft_steps, batch=args.sft_batch, lr=args.sft_lr, seconds=round(sft_s))
    print(json.dumps(report, indent=2, ensure_ascii=False), flush=True)
    return report


if __name__ == "__main__":
    main()
