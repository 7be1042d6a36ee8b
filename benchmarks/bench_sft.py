"""SFT training throughput: posttrain vs TRL's SFTTrainer, same model, data and settings.

Both train the same saved random-initialised (or embedded) model on the arithmetic task's train rows
(conversational prompt/completion, loss on the completion), with packing on (posttrain `packing=true`;
TRL `packing=True, packing_strategy="bfd"`, which turns on padding_free), fp32 on CPU, AdamW, the
same batch size, max_length, learning rate, schedule and steps, no gradient checkpointing.

Throughput is real (non-pad) tokens per second of wall-clock time between consecutive optimizer
steps (the whole loop: data, forward, backward, optimizer, logging), as the median over timed
windows after warm-up steps. MFU = 6 * parameters * tokens/s / the fp32 matmul peak measured here.

    python benchmarks/bench_sft.py                      # both models
    python benchmarks/bench_sft.py --models embedded --warmup 1 --window 2 --windows 2   # quick look

Measured (2-core AMD EPYC VM shared with other jobs, load average ~4, so --threads 1: with 2
threads OpenMP spin-waits on the busy cores made every number noise; the embedded model was not
shipped yet, so a random Llama of its shape stood in):

    $ python benchmarks/bench_sft.py --threads 1
    measured fp32 matmul peak: 103.5 GFLOP/s
    == embedded (random Llama, 3.29M parameters)
      posttrain        2135 tokens/s  (windows: 2196, 2135, 2126)  MFU 40.7%  loss 4.5110 after 23942 tokens
      TRL SFTTrainer    998 tokens/s  (windows: 973, 998, 1028)    MFU 19.0%  loss 4.5110 after 23942 tokens
      ratio posttrain / TRL: 2.14x   loss difference: +0.00%
    == qwen2-25m (random Qwen2, 24.45M parameters)
      posttrain         346 tokens/s  (windows: 359, 345, 346)     MFU 49.0%  loss 3.2572 after 23940 tokens
      TRL SFTTrainer    203 tokens/s  (windows: 193, 203, 205)     MFU 28.8%  loss 3.2572 after 23940 tokens
      ratio posttrain / TRL: 1.70x   loss difference: -0.00%

(Per-step losses of the two agree to 1e-7 relative: same packed rows, same order, same objective.)
Where the speed comes from: TRL's padding-free batch is one flattened row whose attention costs
(batch x max_length)^2 under sdpa's block mask; posttrain keeps rows of max_length and runs causal
attention per packed example (models/packed_attention.py), computes logits only where labels are,
and has no Trainer overhead (TRL also computes entropy and token accuracy every step).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from timing import window_rates  # noqa: E402 (benchmarks/ is on sys.path when run as a script)

MODELS = ("embedded", "qwen2-25m")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {MODELS}")
    # TRL packs in `datasets.map` batches of 1000 rows; with at most 1000 rows both frameworks build the same
    # best-fit-decreasing rows and (same seed, same torch.randperm) visit them in the same order, so their
    # losses must agree step by step: a check that both optimise the same objective.
    p.add_argument("--rows", type=int, default=1000, help="arithmetic train rows")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=4, help="packed rows per step")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps (also lr warm-up steps)")
    p.add_argument("--window", type=int, default=3, help="steps per timed window")
    p.add_argument("--windows", type=int, default=3, help="timed windows (median reported)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (both frameworks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    args.steps = args.warmup + args.window * args.windows
    return args


# ------------------------------------------------------------------------------------------ setup


def matmul_peak_flops(sizes=(512, 1024, 2048), seconds: float = 1.5) -> float:
    """Measured fp32 matmul FLOP/s: the best short burst of n x n products over a few sizes."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.matmul(a, b)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            for _ in range(2):
                torch.matmul(a, b)
            best = max(best, 2 * 2 * n**3 / (time.perf_counter() - t))
    return best


def embedded_tokenizer(rows):
    from posttrain.embedded import EMBEDDED_MODEL_DIR

    if (EMBEDDED_MODEL_DIR / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR), "shipped"
    from posttrain.embedded.tokenizer_build import build_tokenizer

    return build_tokenizer(m["content"] for r in rows for m in r["prompt"] + r["completion"]), "built from the task rows"


def prepare_model(name: str, rows, workdir: Path) -> tuple[str, str]:
    """A directory holding the model and tokenizer both frameworks load; and how it was made."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from posttrain.embedded import EMBEDDED_MODEL_DIR

    if name == "embedded" and (EMBEDDED_MODEL_DIR / "config.json").is_file():
        return str(EMBEDDED_MODEL_DIR), "the shipped embedded model"
    tok, how = embedded_tokenizer(rows)
    torch.manual_seed(0)
    if name == "embedded":  # not shipped yet: the same architecture, random weights
        config = LlamaConfig(vocab_size=len(tok), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                             num_key_value_heads=4, intermediate_size=704, max_position_embeddings=1024, tie_word_embeddings=True)
        model, desc = LlamaForCausalLM(config), f"random Llama in the embedded model's shape (tokenizer {how})"
    else:
        config = Qwen2Config(vocab_size=len(tok), hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                             num_key_value_heads=2, intermediate_size=1536, max_position_embeddings=1024, tie_word_embeddings=False)
        model, desc = Qwen2ForCausalLM(config), f"random Qwen2 (hidden 512, 8 layers, GQA 8/2, tokenizer {how})"
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.config, key, getattr(tok, key))
    out = workdir / name
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out), desc


# --------------------------------------------------------------------------------------- runners


def run_posttrain(model_dir: str, data_file: str, args, workdir: Path) -> dict:
    from posttrain.algorithms.sft import SFT, SFTConfig, as_rows, load_examples
    from posttrain.config import build_config
    from posttrain.data.steps import OfflineSource
    from posttrain.models.loading import load_causal_lm, load_tokenizer
    from posttrain.train.loop import train

    config = build_config(SFTConfig, dict(
        model=model_dir, dataset=data_file, output_dir=str(workdir / "posttrain-run"), overwrite_output_dir=True,
        packing=True, max_length=args.max_length, batch_size=args.batch_size, learning_rate=args.lr,
        lr_scheduler="cosine", warmup_steps=args.warmup, max_steps=args.steps, logging_steps=1, seed=args.seed,
        max_grad_norm=1.0, device="cpu"))
    tokenizer = load_tokenizer(model_dir)
    algorithm = SFT(tokenizer.pad_token_id, packing=True)
    rows = as_rows(load_examples(tokenizer, data_file, None, config), config)
    stamps, tokens = [], []

    class TimedSource(OfflineSource):
        def next_step(self, step):
            stamps.append(time.perf_counter())
            batches = super().next_step(step)
            tokens.append(sum(b["num_tokens"] for b in batches))
            return batches

    source = TimedSource(rows, algorithm.collate, config.batch_size, 1, config.seed)
    train(config, build_model=lambda: load_causal_lm(model_dir), tokenizer=tokenizer, algorithm=algorithm, source=source)
    records = [json.loads(line) for line in (workdir / "posttrain-run" / "metrics.jsonl").read_text().splitlines()]
    # the last stamp: the end of the last step is the first metrics write after it; use the final step's own time
    stamps.append(stamps[-1] + tokens[-1] / records[-1]["tokens_per_second"])
    return {"tok_s": window_rates(stamps, tokens, args), "loss": [r["loss"] for r in records], "tokens": tokens}


def run_trl(model_dir: str, rows: list[dict], args, workdir: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    stamps, totals = [], []

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            stamps.append(time.perf_counter())
            totals.append(0)

        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())
            totals.append(trainer._total_train_tokens)

    config = SFTConfig(
        output_dir=str(workdir / "trl-run"), packing=True, packing_strategy="bfd", padding_free=True,
        max_length=args.max_length, per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
        lr_scheduler_type="cosine", warmup_steps=args.warmup, max_steps=args.steps, logging_steps=1, seed=args.seed,
        max_grad_norm=1.0, bf16=False, fp16=False, use_cpu=True, gradient_checkpointing=False, report_to="none",
        save_strategy="no", eval_strategy="no", dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=config,
                         train_dataset=Dataset.from_list(rows), processing_class=AutoTokenizer.from_pretrained(model_dir))
    trainer.add_callback(Clock())
    trainer.train()
    tokens = [b - a for a, b in zip(totals, totals[1:])]
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tok_s": window_rates(stamps, tokens, args), "loss": losses, "tokens": tokens}


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    args = parse_args()
    print("$ " + shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]))
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    import trl

    from posttrain.tasks import get_task

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}; "
          f"{os.cpu_count()} CPU cores, {args.threads} threads; load average before start {os.getloadavg()[0]:.2f}")
    print(f"settings: fp32 CPU, packing on (BFD), max_length {args.max_length}, batch {args.batch_size} packed rows/step, "
          f"lr {args.lr} (cosine, {args.warmup} warm-up steps), max_grad_norm 1.0, AdamW, {args.steps} steps: "
          f"{args.warmup} untimed + {args.windows} windows x {args.window}; {args.rows} arithmetic train rows")
    peak = matmul_peak_flops()
    print(f"measured fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s (MFU counts 6 x parameters FLOPs per token, no attention)")

    rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in get_task("arithmetic").rows("train", args.rows)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data_file = workdir / "train.jsonl"
        data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
        for name in args.models.split(","):
            model_dir, desc = prepare_model(name, rows, workdir)
            params = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_pretrained(model_dir).parameters())
            print(f"\n== {name}: {desc}, {params / 1e6:.2f}M parameters")
            pt = run_posttrain(model_dir, str(data_file), args, workdir / name)
            tr = run_trl(model_dir, rows, args, workdir / name)
            results[name] = {"params": params, "posttrain": pt, "trl": tr}
            report(name, params, pt, tr, peak, args)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "peak_flops": peak, **results}, indent=1))


def report(name, params, pt, tr, peak, args) -> None:
    rows = []
    for label, r in (("posttrain", pt), ("TRL SFTTrainer", tr)):
        med = statistics.median(r["tok_s"])
        last = slice(args.steps - args.window, args.steps)
        rows.append((label, med, r["tok_s"], statistics.mean(r["loss"][last]), sum(r["tokens"]), 6 * params * med / peak))
    for label, med, windows, loss, tokens, mfu in rows:
        print(f"  {label:<15} {med:9.0f} tokens/s  (windows: {', '.join(f'{w:.0f}' for w in windows)})  "
              f"MFU {100 * mfu:5.1f}%   loss over the last {args.window} steps {loss:.4f} after {tokens} tokens")
    ratio, loss_gap = rows[0][1] / rows[1][1], rows[0][3] / rows[1][3] - 1
    print(f"  ratio posttrain / TRL: {ratio:.2f}x   loss difference: {100 * loss_gap:+.2f}% "
          f"({'within' if abs(loss_gap) <= 0.02 else 'OUTSIDE'} +/-2%)")


if __name__ == "__main__":
    main()
