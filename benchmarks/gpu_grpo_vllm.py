"""GRPO with the vLLM backend on a ~0.5B random-init Qwen2 (Qwen2.5-0.5B's shape), for a GPU machine:
prints completion tokens/s, training tokens/s, MFU and peak memory, with the exact command.

    python benchmarks/gpu_grpo_vllm.py                         # on a GPU, in an environment with `install.sh vllm`
    python benchmarks/gpu_grpo_vllm.py --tiny --device cpu     # the same code path on CPU, a small config (a dry run)

The model is random (no hub download), so the reward (the share of the letter 'a') is only there to
give GRPO something to optimise; the point is throughput. MFU = 6 x parameters x trained tokens/s
over the GPU's dense bf16 peak (`--peak-tflops`, default 989: H100 SXM), counting the policy's
forward + backward only (generation and the log-prob recompute of tis_cap are not in the numerator).
Peak memory is what torch's allocator reached in this process (the trainer and, colocated, vLLM's
tensors) and the device's used memory at the end (vLLM's own pools included).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REWARDS = '''
def letter_a(prompts, completions, **columns):
    return [c.count("a") / max(1, len(c)) for c in completions]
'''


def build_model(folder: Path, tiny: bool) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    from posttrain.embedded import SHIPPED

    tokenizer = AutoTokenizer.from_pretrained(SHIPPED["embedded"])  # the embedded chat template and vocabulary, padded
    shape = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1) if tiny \
        else dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2)
    config = Qwen2Config(vocab_size=151936 if not tiny else 4096, max_position_embeddings=4096, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, **shape)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="a small config (CPU dry run)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    from posttrain.algorithms.grpo import GRPOConfig, run_grpo
    from posttrain.config import build_config

    work = Path(tempfile.mkdtemp(prefix="gpu-grpo-vllm-"))
    model = build_model(work / "model", args.tiny)
    (work / "rewards.py").write_text(REWARDS)
    prompts = work / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"Write about topic {i}."}]}) + "\n" for i in range(512)))
    gpu = args.device.startswith("cuda")
    config = build_config(GRPOConfig, dict(
        model=model, dataset=str(prompts), reward_funcs=[f"{work / 'rewards.py'}:letter_a"], output_dir=str(work / "run"),
        device=args.device, dtype="bfloat16" if gpu else "float32", rollout_backend="vllm", tis_cap=2.0,
        prompts_per_step=args.prompts, num_generations=args.generations, max_new_tokens=args.new_tokens, max_length=args.new_tokens + 128,
        batch_size=16, learning_rate=1e-6, max_steps=args.steps, logging_steps=1, **({"vllm_sleep": True} if gpu else {})))
    began = time.perf_counter()
    run_grpo(config)
    wall = time.perf_counter() - began
    records = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()][1:]  # the first step warms up
    parameters = sum(v.numel() for v in __import__("safetensors.torch", fromlist=["load_file"]).load_file(
        str(work / "run" / "final" / "model.safetensors")).values())
    completion = statistics.median(r["rollout/tokens_per_second"] for r in records)
    trained = statistics.median(r["tokens_per_second"] for r in records)
    sync = statistics.median(r["time/weight_sync_seconds"] for r in records)
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"model: random Qwen2, {parameters / 1e6:.0f}M parameters, {config.dtype}, {args.prompts} prompts x G={args.generations}, "
          f"<= {args.new_tokens} new tokens; {args.steps} steps in {wall:.0f} s (medians over steps 2..{args.steps})")
    print(f"vLLM generation {completion:,.0f} completion tok/s; training {trained:,.0f} tok/s; weight sync {sync * 1000:.0f} ms")
    if gpu:
        mfu = 6 * parameters * trained / (args.peak_tflops * 1e12)
        free, total = torch.cuda.mem_get_info()
        print(f"MFU {100 * mfu:.1f} % of {args.peak_tflops:g} TFLOP/s; peak torch memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB; "
              f"device memory in use at the end {(total - free) / 2**30:.1f} of {total / 2**30:.0f} GiB")


if __name__ == "__main__":  # vLLM's engine may spawn processes
    main()
