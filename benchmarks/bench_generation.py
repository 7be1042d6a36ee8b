"""posttrain's sampler against Hugging Face `model.generate`, same model, prompts and settings.

    python benchmarks/bench_generation.py --model random-llama --batch 16 --prompt-len 32 --new-tokens 128

Both sides sample (`do_sample=True`) with the same temperature / top-p / top-k and generate
exactly `--new-tokens` tokens per sequence: eos is disabled for both (`eos_token_id=None` for
`generate`, `ignore_eos=True` for ours), so the token counts are equal. Each side runs once to
warm up, then `--repeats` times, alternating; we report the median tokens/s (generated tokens
only) and the ratio.

`--model`: `embedded` (the package's embedded model, falling back to `random-llama` if it has not
been built yet), `random-llama` (a ~11M-parameter random Llama, vocab 32000), or a local
`save_pretrained` directory.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

from posttrain.generation import SamplingParams, generate


class _IdTokenizer:
    """Enough of a tokenizer for a random model: ids decode to space-separated numbers."""

    pad_token_id = 0
    eos_token_id = 2

    def batch_decode(self, sequences, skip_special_tokens=True):
        return [" ".join(map(str, seq)) for seq in sequences]


def load(name: str, device: str):
    if name == "embedded":
        from posttrain.embedded import EMBEDDED_MODEL_DIR

        if (EMBEDDED_MODEL_DIR / "config.json").exists():
            name = str(EMBEDDED_MODEL_DIR)
        else:
            print(f"# embedded model not built yet ({EMBEDDED_MODEL_DIR}); using random-llama")
            name = "random-llama"
    if name == "random-llama":
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=32000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                             tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
        model, tokenizer = LlamaForCausalLM(config), _IdTokenizer()
    elif Path(name).is_dir():
        model = AutoModelForCausalLM.from_pretrained(name)
        tokenizer = AutoTokenizer.from_pretrained(name)
    else:
        sys.exit(f"--model: {name!r} is not 'embedded', 'random-llama' or a local model directory")
    return model.to(device).eval(), tokenizer, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--batch", type=int, default=16, help="number of prompts")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--n", type=int, default=1, help="samples per prompt")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print("$ python " + " ".join(shlex.quote(a) for a in sys.argv))

    model, tokenizer, resolved = load(args.model, args.device)
    vocab = model.config.get_text_config().vocab_size
    generator = torch.Generator().manual_seed(0)
    prompts = torch.randint(3, vocab, (args.batch, args.prompt_len), generator=generator).to(args.device)
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=args.temperature, top_p=args.top_p,
                            top_k=args.top_k, n=args.n, seed=0)
    hf_config = GenerationConfig(do_sample=True, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                                 max_new_tokens=args.new_tokens, num_return_sequences=args.n,
                                 eos_token_id=None, pad_token_id=tokenizer.pad_token_id or 0)
    tokens = args.batch * args.n * args.new_tokens
    params_count = sum(p.numel() for p in model.parameters())
    print(f"# model={resolved} ({params_count / 1e6:.1f}M params, vocab {vocab}, "
          f"attn={model.config._attn_implementation}) device={args.device} torch_threads={torch.get_num_threads()} "
          f"torch={torch.__version__}")
    print(f"# prompts={args.batch} x {args.prompt_len} tokens, n={args.n}, new_tokens={args.new_tokens} (eos off), "
          f"temperature={args.temperature} top_p={args.top_p} top_k={args.top_k}; {tokens} tokens per run; "
          f"median of {args.repeats} after 1 warm-up")

    def ours() -> int:
        out = generate(model, tokenizer, prompts.tolist(), params, ignore_eos=True)
        return sum(len(t) for t in out.token_ids)

    def hf() -> int:
        with torch.inference_mode():
            out = model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), generation_config=hf_config)
        return (out.shape[1] - args.prompt_len) * out.shape[0]

    def timed(fn) -> float:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        produced = fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        assert produced == tokens, f"{fn.__name__} produced {produced} tokens, expected {tokens}"
        return tokens / (time.perf_counter() - start)

    timed(hf), timed(ours)  # warm-up
    rates: dict[str, list[float]] = {"hf": [], "ours": []}
    for _ in range(args.repeats):
        rates["hf"].append(timed(hf))
        rates["ours"].append(timed(ours))
    hf_rate, our_rate = statistics.median(rates["hf"]), statistics.median(rates["ours"])
    print(f"transformers generate: {hf_rate:9.1f} tokens/s  (runs: {', '.join(f'{r:.0f}' for r in rates['hf'])})")
    print(f"posttrain generate:    {our_rate:9.1f} tokens/s  (runs: {', '.join(f'{r:.0f}' for r in rates['ours'])})")
    print(f"ratio posttrain / transformers: {our_rate / hf_rate:.2f}x")


if __name__ == "__main__":
    main()
