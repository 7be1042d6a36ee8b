"""Generation through the vLLM backend against vLLM alone, posttrain's sampler and `model.generate`,
same model, prompts and settings, in one run; and the backend's weight-sync time.

    .ci/extras/vllm-venv/bin/python benchmarks/bench_vllm.py --model embedded
    .ci/extras/vllm-venv/bin/python benchmarks/bench_vllm.py --model random-qwen2    # ~60M random Qwen2

(any environment where `bash install.sh vllm` ran). Every side samples `--prompts` prompts x `--n`
samples, up to `--new-tokens` tokens, T=1, stopping at eos, from the same seeds; tokens/s counts
generated tokens. "vLLM alone" is `LLM.generate` on the backend's own engine with the same request
settings: the backend's overhead (building requests, reading log-probs) is the gap between the two.
Each side runs once to warm up, then `--repeats` times, alternating; medians are reported.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time

import torch


def build_model(name: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    if name == "embedded":
        from posttrain.embedded import SHIPPED

        path = str(SHIPPED["embedded"])
    else:  # a ~60M random Qwen2 with the embedded tokenizer's vocabulary padded to 32k
        from posttrain.embedded import SHIPPED

        path = tempfile.mkdtemp(prefix="bench-vllm-")
        tokenizer = AutoTokenizer.from_pretrained(SHIPPED["embedded"])
        torch.manual_seed(0)
        config = Qwen2Config(vocab_size=32000, hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                             num_key_value_heads=2, max_position_embeddings=1024, eos_token_id=tokenizer.eos_token_id)
        AutoModelForCausalLM.from_config(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
    return path, AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="embedded", choices=["embedded", "random-qwen2"])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-hf", action="store_true", help="leave model.generate out (slowest)")
    args = parser.parse_args()
    from vllm import SamplingParams as VLLMParams
    from vllm.inputs import TokensPrompt

    from posttrain.generation import SamplingParams, generate
    from posttrain.rollout.vllm_backend import VLLMColocated, request_params

    path, model, tokenizer = build_model(args.model)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": f"What is {i} + {2 * i + 7}?"}],
                                             add_generation_prompt=True, tokenize=True) for i in range(args.prompts)]
    prompts = [list(p["input_ids"] if hasattr(p, "keys") else p) for p in prompts]
    params = SamplingParams(n=args.n, temperature=1.0, max_new_tokens=args.new_tokens, seed=0)
    began = time.perf_counter()
    backend = VLLMColocated(model, tokenizer, model_path=path, dtype="float32", max_model_len=1024)
    start_seconds = time.perf_counter() - began

    def vllm_alone():
        requests = [VLLMParams(**k, stop_token_ids=backend.eos_ids) for k in request_params(params, len(prompts))]
        outs = backend.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], requests, use_tqdm=False)
        return sum(len(c.token_ids) for o in outs for c in o.outputs)

    def hf_generate():
        tokens = 0
        torch.manual_seed(0)
        for p in prompts:
            ids = torch.tensor([p])
            with torch.no_grad():
                out = model.generate(ids, do_sample=True, temperature=1.0, top_k=0, max_new_tokens=args.new_tokens,
                                     num_return_sequences=args.n, pad_token_id=tokenizer.pad_token_id or 0)
            tokens += int((out[:, len(p):] != (tokenizer.pad_token_id or 0)).sum())
        return tokens

    sides = {
        "vLLM alone (LLM.generate)": vllm_alone,
        "posttrain vLLM backend": lambda: sum(len(t) for t in backend.generate(prompts, params).token_ids),
        "posttrain sampler": lambda: sum(len(t) for t in generate(model, tokenizer, prompts, params).token_ids),
    }
    if not args.skip_hf:
        sides["transformers model.generate"] = hf_generate
    rates = {name: [] for name in sides}
    for repeat in range(args.repeats + 1):
        for name, side in sides.items():
            t0 = time.perf_counter()
            tokens = side()
            if repeat:  # the first pass warms up
                rates[name].append(tokens / (time.perf_counter() - t0))
    syncs = []
    for _ in range(5):
        t0 = time.perf_counter()
        backend.sync_weights()
        syncs.append(time.perf_counter() - t0)
    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"model {args.model} ({parameters:.1f}M parameters, float32), {args.prompts} prompts x {args.n} samples, "
          f"<= {args.new_tokens} new tokens, T=1, stop at eos; torch threads {torch.get_num_threads()}")
    print(f"engine start {start_seconds:.1f} s; weight sync median {1000 * statistics.median(syncs):.0f} ms")
    alone = statistics.median(rates["vLLM alone (LLM.generate)"])
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  {name:30s} {rate:8.0f} tok/s   {rate / alone:5.2f}x vLLM alone")


if __name__ == "__main__":  # vLLM's engine may spawn processes
    main()
