"""Shared fixtures: tiny random Llama / Qwen2 / GPT-2 models saved with a tiny tokenizer, so
`model=<dir>` works in-process and through the CLI; small SFT datasets; run helpers."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

from tiny_tokenizers import chatml_tokenizer, llama3_tokenizer, plain_tokenizer, save_tokenizer

REPO = Path(__file__).resolve().parents[1]

# Tiny models run fastest on one thread; with several, OpenMP spin-waits on a busy 2-core machine
# make each small matmul ~1000x slower.
torch.set_num_threads(1)

ARCHS = {
    "llama": (lambda v: LlamaConfig(vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256), llama3_tokenizer),
    "qwen2": (lambda v: Qwen2Config(vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256), chatml_tokenizer),
    "gpt2": (lambda v: GPT2Config(vocab_size=v, n_embd=32, n_layer=2, n_head=4, n_positions=256,
                                  bos_token_id=0, eos_token_id=0), plain_tokenizer),
}


def make_model_dir(path, arch: str = "llama", seed: int = 0) -> str:
    """A random tiny `arch` model and its tokenizer, saved where AutoModel/AutoTokenizer load them."""
    make_config, make_tokenizer = ARCHS[arch]
    tokenizer = make_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config(len(tokenizer)))
    model.save_pretrained(path)
    save_tokenizer(tokenizer, path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    return make_model_dir(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> str:
    return make_model_dir(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> str:
    return make_model_dir(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2")


def sft_rows(n: int, seed: int = 0, conversational: bool = True) -> list[dict]:
    """Arithmetic-flavoured prompt/completion rows of varied lengths."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 999), rng.randint(0, 99)
        prompt = f"What is {a} + {b}?" + " Hello!" * rng.randint(0, 3)
        completion = f"<think>{a} + {b}</think><answer>{a + b}</answer>" + " The sky is blue." * rng.randint(0, 2)
        if conversational:
            rows.append({"prompt": [{"role": "user", "content": prompt}], "completion": [{"role": "assistant", "content": completion}]})
        else:
            rows.append({"prompt": prompt, "completion": completion})
    return rows


def preference_rows(n: int, seed: int = 0, conversational: bool = False) -> list[dict]:
    """Pairs whose chosen completion has the right sum and the rejected one a wrong sum, varied lengths."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        prompt = f"What is {a} + {b}?" + " Please." * rng.randint(0, 2)
        wrong = a + b + rng.choice([-10, -1, 1, 10])
        chosen = f" The answer is {a + b}." + " Done." * rng.randint(0, 2)
        rejected = f" The answer is {wrong}." + " Done." * rng.randint(0, 2)
        if conversational:
            rows.append({"prompt": [{"role": "user", "content": prompt}],
                         "chosen": [{"role": "assistant", "content": chosen.strip()}],
                         "rejected": [{"role": "assistant", "content": rejected.strip()}]})
        else:
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


def write_jsonl(path, rows: list[dict]) -> str:
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def sft_data(tmp_path) -> tuple[str, str]:
    """(train.jsonl, eval.jsonl) with 32 and 8 conversational rows."""
    return write_jsonl(tmp_path / "train.jsonl", sft_rows(32)), write_jsonl(tmp_path / "eval.jsonl", sft_rows(8, seed=1))


def sft_config(**values):
    from posttrain.algorithms.sft import SFTConfig
    from posttrain.config import build_config

    defaults = dict(max_length=128, batch_size=4, learning_rate=1e-3, logging_steps=1, lr_scheduler="constant", device="cpu")
    return build_config(SFTConfig, {**defaults, **values})


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def without_timing(records: list[dict]) -> list[dict]:
    from posttrain.train.metrics import TIMING_KEYS

    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    model = AutoModelForCausalLM.from_pretrained(Path(run_dir) / "final")
    return {k: v.clone() for k, v in model.state_dict().items()}


def run_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m posttrain ARGS` in a subprocess (CPU, 1 thread), capturing output."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run([sys.executable, "-m", "posttrain", *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=REPO)
