"""What a loadable checkpoint costs: checkpoints/step-N/ with and without its save_pretrained files.

Writes `--repeats` checkpoints of a model (the shipped embedded model by default: 3.5 M parameters,
float32) the way the training loop does (`save_checkpoint` with and without the `pretrained_writer`
export), full fine-tuning and LoRA (r=16, all-linear), and prints the median seconds per checkpoint and
its size on disk. A full fine-tune's save_pretrained weights repeat model.pt's tensors (one more copy of
the weights beside the optimizer's two); a LoRA checkpoint adds the adapter alone.

    python benchmarks/bench_checkpoint.py                  # embedded model, 5 repeats
    python benchmarks/bench_checkpoint.py --model DIR      # any local causal LM
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from posttrain.models import apply_lora, load_causal_lm, load_tokenizer
from posttrain.train.checkpoint import save_checkpoint
from posttrain.train.loop import build_optimizer, pretrained_writer


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(model, tokenizer, lora: bool, export: bool, repeats: int) -> tuple[float, int]:
    config = SimpleNamespace(learning_rate=1e-4, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                             lora=lora, gradient_checkpointing=False)
    optimizer = build_optimizer(model, config)
    model(torch.tensor([[1, 2, 3]])).logits.sum().backward()
    optimizer.step()  # the Adam moments exist, as in a real checkpoint
    times = []
    with tempfile.TemporaryDirectory() as root:
        for step in range(1, repeats + 1):
            began = time.perf_counter()
            writer = pretrained_writer(model, tokenizer, config, None, merge_lora=False) if export else None
            path = save_checkpoint(Path(root), step, model, optimizer, {"step": step}, keep_last=1, export=writer)
            times.append(time.perf_counter() - began)
        return statistics.median(times), _size(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tokenizer = load_tokenizer(args.model)
    for lora in (False, True):
        model = load_causal_lm(args.model)
        if lora:
            model = apply_lora(model, r=16, alpha=32, dropout=0.0, target_modules=["all-linear"])
        (t0, s0), (t1, s1) = (measure(model, tokenizer, lora, export, args.repeats) for export in (False, True))
        name = "lora" if lora else "full"
        print(f"{name:5s} resume state only   {t0 * 1000:7.1f} ms  {s0 / 2**20:7.2f} MiB")
        print(f"{name:5s} + save_pretrained   {t1 * 1000:7.1f} ms  {s1 / 2**20:7.2f} MiB   ({t1 / t0:.2f}x time, {s1 / s0:.2f}x disk)")


if __name__ == "__main__":
    main()
