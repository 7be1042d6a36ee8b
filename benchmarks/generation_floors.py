"""Where a decode step's time goes: posttrain's sampler with its matmuls and/or attention removed.

    python benchmarks/generation_floors.py --model embedded --repeats 7

Runs round-robin, so a noisy machine slows every variant alike: `model.generate`, posttrain's
`generate`, and posttrain's with the lean decode step's attention, its projections, or both
replaced by zeros of the right shape (the sampled tokens then mean nothing; only the time counts).
Prints the median ms per decode step of each (16 prompts x 32 tokens, eos off, 128 new tokens, as
bench_generation.py), the in-loop cost of the matmuls and of the attention that this implies, and
the time per step that 2x `generate` would need.

Measured 2026-11-21 on the 2-core CPU VM, embedded model, 2 threads (ms per step; the first run,
on a quiet VM, by this script's draft, the others by the command above on a busy one):
    generate  ours  no attention  no matmuls  neither | matmuls+attention  2x needs
      6.19    3.67      2.50         1.71       0.93  |       2.74           3.10
      8.85    5.43      4.06         3.06       1.13  |       4.31           4.43
      7.65    4.84      3.25         2.29       1.10  |       3.74           3.83
      6.46    4.68      3.62         2.16       1.13  |       3.54           3.23
In every run the matmuls and attention alone, in the loop, leave at most 0.36 ms/step of the 2x
budget for everything else, and the prefill alone (the same forward `generate` runs) takes ~0.3
ms/step of that. In the loop both run far below their speed in isolation (the 17 packed matmuls
take ~1.0 ms hot, ~1.2 ms after flushing the cache), as 14 MB of weights and up to 21 MB of fp32
KV cache stream through a 32 MB L3 shared with the VM's neighbours.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
import types

import torch
import torch.nn.functional as F
from bench_generation import load
from transformers import GenerationConfig

from posttrain.generation import SamplingParams, generate, lean_decode


class _ZeroProjection:
    """Stands in for `lean_decode._Projection`: the right output shape, no matmul."""

    def __init__(self, weight, bias, rows_hint):
        self.out_features = weight.shape[0]

    def __call__(self, x):
        return x.new_zeros(x.shape[0], self.out_features)

    def add_to(self, residual, x):
        return residual + 0


def _functional_without_attention():
    """`torch.nn.functional` as lean_decode sees it, with attention returning zeros."""
    namespace = types.SimpleNamespace(**{name: getattr(F, name) for name in dir(F) if not name.startswith("__")})
    namespace.scaled_dot_product_attention = lambda q, k, v, **kwargs: torch.zeros_like(q)
    return namespace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("$ python " + " ".join(shlex.quote(a) for a in sys.argv))
    model, tokenizer, resolved = load(args.model, "cpu")
    model.generation_config.eos_token_id = None
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (args.batch, args.prompt_len), generator=torch.Generator().manual_seed(0))
    params = SamplingParams(max_new_tokens=args.new_tokens, seed=0)
    hf_config = GenerationConfig(do_sample=True, top_k=0, max_new_tokens=args.new_tokens, eos_token_id=None,
                                 pad_token_id=tokenizer.pad_token_id or 0)
    print(f"# model={resolved} torch_threads={torch.get_num_threads()} prompts={args.batch} x {args.prompt_len}, "
          f"{args.new_tokens} new tokens, eos off; median of {args.repeats} round-robin runs after 1 warm-up")

    real_projection, real_functional, no_attention = lean_decode._Projection, lean_decode.F, _functional_without_attention()

    def ours(matmuls: bool = True, attention: bool = True):
        def run():
            lean_decode._Projection = real_projection if matmuls else _ZeroProjection
            lean_decode.F = real_functional if attention else no_attention
            try:
                generate(model, tokenizer, ids.tolist(), params, ignore_eos=True)
            finally:
                lean_decode._Projection, lean_decode.F = real_projection, real_functional
        return run

    def hf():
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=hf_config)

    variants = {"hf generate": hf, "ours": ours(), "ours, no attention": ours(attention=False),
                "ours, no matmuls": ours(matmuls=False), "ours, neither": ours(False, False)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for run in variants.values():
        run()
    for _ in range(args.repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / args.new_tokens * 1000)
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:20s} {median[name]:6.2f} ms/step  (runs: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"in the loop: matmuls {median['ours'] - median['ours, no matmuls']:.2f} ms/step, "
          f"attention {median['ours'] - median['ours, no attention']:.2f}, "
          f"both {median['ours'] - median['ours, neither']:.2f}, everything else {median['ours, neither']:.2f}")
    print(f"ratio {median['hf generate'] / median['ours']:.2f}x; 2x needs <= {median['hf generate'] / 2:.2f} ms/step")


if __name__ == "__main__":
    main()
