"""Shared fixtures: tiny random Llama / Qwen2 / GPT-2 models saved with a tiny tokenizer, so
`model=<dir>` works in-process and through the CLI; small SFT datasets; run helpers; the `e2e` marker
on every test under tests/e2e/; and, at the end, the fixtures and helpers that a unit test file and
its end-to-end twin (tests/unit/..., tests/e2e/...) both use."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoModelForTokenClassification,
                          AutoTokenizer, GPT2Config, LlamaConfig, Qwen2Config)

from tiny_tokenizers import chatml_tokenizer, llama3_tokenizer, plain_tokenizer, save_tokenizer

REPO = Path(__file__).resolve().parents[1]
E2E_TESTS = REPO / "tests" / "e2e"


def pytest_collection_modifyitems(config, items):
    """Mark every test under tests/e2e/ `e2e` (registered in pyproject.toml): `pytest -m "not e2e"` runs
    the unit suite alone, `pytest -m e2e` the end-to-end one."""
    for item in items:
        if E2E_TESTS in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


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
    from posttrain.train.metrics import is_timing

    return [{k: v for k, v in r.items() if not is_timing(k)} for r in records]


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    model = AutoModelForCausalLM.from_pretrained(Path(run_dir) / "final")
    return {k: v.clone() for k, v in model.state_dict().items()}


def run_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m posttrain ARGS` in a subprocess (CPU, 1 thread), capturing output."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run([sys.executable, "-m", "posttrain", *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=REPO)


def say_something_setup(folder, rewards: str, name: str = "rewards.py") -> tuple[str, str]:
    """(a prompts file of 16 "Say something i:" rows, a rewards module holding the code `rewards`) in
    `folder`: the online-RL tests' data for a tiny random model."""
    module = folder / name
    module.write_text(rewards)
    prompts = write_jsonl(folder / "prompts.jsonl", [{"prompt": f"Say something {i}:"} for i in range(16)])
    return prompts, str(module)


# ----------------------------------------------------------------------------------------------------
# Shared by a unit file and its end-to-end twin: each one lives here once, and the files name it in
# their `from conftest import ...` line (fixtures need no import).


# tests/unit/test_api.py, tests/e2e/test_api.py: keyword arguments of a 2-step SFT run through the API
SFT_KEYWORDS = dict(max_steps=2, batch_size=4, max_length=128, learning_rate=1e-3, logging_steps=1, lr_scheduler="constant",
                    device="cpu")


# tests/unit/algorithms/test_compare.py, tests/e2e/test_compare.py
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(reference dir, perturbed-policy dir): the embedded model saved, and a copy with its first
    MLP down-projection scaled by 1.5."""
    from posttrain.models.loading import load_causal_lm, load_tokenizer

    root = tmp_path_factory.mktemp("compare_models")
    model, tokenizer = load_causal_lm("embedded"), load_tokenizer("embedded")
    model.save_pretrained(root / "ref")
    tokenizer.save_pretrained(root / "ref")
    matrix = next(p for name, p in model.named_parameters() if p.ndim == 2 and "mlp" in name)
    with torch.no_grad():
        matrix.mul_(1.5)
    model.save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    return str(root / "ref"), str(root / "policy")


# tests/unit/algorithms/test_dpo.py, tests/e2e/test_dpo.py
def dpo_config(**values):
    from posttrain.algorithms.dpo import DPOConfig
    from posttrain.config import build_config

    defaults = dict(max_length=128, batch_size=8, learning_rate=1e-3, logging_steps=1, lr_scheduler="constant", device="cpu")
    return build_config(DPOConfig, {**defaults, **values})


@pytest.fixture
def pairs(tmp_path) -> tuple[str, str]:
    return write_jsonl(tmp_path / "train.jsonl", preference_rows(32)), write_jsonl(tmp_path / "eval.jsonl", preference_rows(8, seed=1))


# tests/unit/methods/test_heldout.py, tests/e2e/test_eval.py
EVEN_LENGTH_SCORER = '''
def even_length(prompts, completions, **columns):
    assert "answer" in columns and len(columns["answer"]) == len(completions)
    return [float(len(c[0]["content"]) % 2 == 0) for c in completions]
'''


@pytest.fixture()
def tiny_run(tmp_path):
    tok = chatml_tokenizer()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    model.save_pretrained(tmp_path / "model")
    save_tokenizer(tok, tmp_path / "model")
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}], "answer": str(2 * i)} for i in range(6)]
    (tmp_path / "prompts.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "scorer.py").write_text(EVEN_LENGTH_SCORER)
    return tmp_path, model, tok, rows


# tests/unit/algorithms/test_kto.py, tests/e2e/test_kto.py
def kto_config(**values):
    from posttrain.algorithms.kto import KTOConfig
    from posttrain.config import build_config

    defaults = dict(max_length=128, batch_size=4, learning_rate=1e-3, logging_steps=1, lr_scheduler="constant", device="cpu")
    return build_config(KTOConfig, {**defaults, **values})


# tests/unit/rewards/test_learned.py, tests/e2e/test_rm_learned_reward.py
def conversations(n: int, seed: int = 0):
    rows = preference_rows(n, seed=seed, conversational=True)
    return [r["prompt"] for r in rows], [r["chosen" if i % 2 else "rejected"] for i, r in enumerate(rows)]


def hand_reward(path: str, prompt, completion) -> float:
    """The score head on the last hidden state of the text the RM's own template writes, by hand."""
    from posttrain.models.loading import DEFAULT_CHAT_TEMPLATE

    tok = AutoTokenizer.from_pretrained(path)
    if isinstance(prompt, str):  # standard rows: prompt as the tokenizer encodes it, completion, eos
        ids = tok(prompt)["input_ids"] + tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    else:
        tok.chat_template = tok.chat_template or DEFAULT_CHAT_TEMPLATE
        ids = tok(tok.apply_chat_template(prompt + completion, tokenize=False), add_special_tokens=False)["input_ids"]
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    last = max(i for i, t in enumerate(ids) if t != pad)  # transformers' rule: the last token that is not padding
    with torch.no_grad():
        hidden = model.base_model(input_ids=torch.tensor([ids])).last_hidden_state[0, last]
        return float(model.score(hidden)[0])


# tests/unit/test_pipeline.py, tests/e2e/test_pipeline.py
def pipeline_file(tmp_path, model, **grpo_extra) -> str:
    """sft on a tiny file, then grpo from `${sft.final}` with the built-in format reward."""
    data = write_jsonl(tmp_path / "train.jsonl", sft_rows(8))
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"What is {i} + 1?"} for i in range(8)])
    spec = {
        "output_dir": str(tmp_path / "run"),
        "defaults": {"device": "cpu", "seed": 3, "logging_steps": 1, "max_length": 128},
        "stages": [
            {"name": "sft", "stage": "sft",
             "config": {"model": model, "dataset": data, "max_steps": 2, "batch_size": 4, "learning_rate": 1e-3}},
            {"name": "grpo", "stage": "grpo", "preset": "grpo",
             "config": {"model": "${sft.final}", "dataset": prompts, "reward_funcs": ["format"], "max_steps": 2,
                        "prompts_per_step": 2, "num_generations": 2, "max_new_tokens": 6, "batch_size": 4,
                        "learning_rate": 1e-3, **grpo_extra}},
        ],
    }
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


# tests/unit/rewards/test_process.py, tests/e2e/test_ppo_process_reward.py
@pytest.fixture(scope="module")
def prm_dir(tiny_llama, tmp_path_factory) -> str:
    """A random 2-label token classifier on the tiny Llama, saved as `posttrain prm` saves one."""
    from posttrain.models.loading import load_tokenizer

    torch.manual_seed(1)
    model = AutoModelForTokenClassification.from_pretrained(tiny_llama, num_labels=2)
    torch.nn.init.normal_(model.score.weight, std=2.0)  # spread P(good) so positions matter
    model.config.prm_step_separator = "\n"
    path = tmp_path_factory.mktemp("prm")
    model.save_pretrained(path)
    load_tokenizer(tiny_llama).save_pretrained(path)
    return str(path)


# tests/unit/methods/test_best_of_n.py, tests/e2e/test_rejection.py: the text inside <answer>...</answer>
ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


# tests/unit/algorithms/test_rm.py, tests/e2e/test_rm.py
def rm_config(**values):
    from posttrain.algorithms.rm import RewardConfig
    from posttrain.config import build_config

    defaults = dict(max_length=128, batch_size=4, learning_rate=1e-3, logging_steps=1, lr_scheduler="constant", device="cpu")
    return build_config(RewardConfig, {**defaults, **values})


def ranking_rows(n: int) -> list[dict]:
    rows = []
    for i, pair in enumerate(preference_rows(n, seed=3)):
        k = 3 + i % 2
        completions = [pair["chosen"], pair["rejected"], " No idea.", " Maybe 7."][:k]
        order = [(i + j) % k for j in range(k)]  # ranks rotate so the best is not always first
        rows.append({"prompt": pair["prompt"], "completions": completions, "ranking": order})
    return rows


# tests/e2e/test_online_dpo.py, tests/e2e/test_rs_dpo.py, tests/e2e/test_rlaif.py: the shipped recipes, scaled down
SMALL_PAIRS = ("prompts=256", "eval_prompts=32", "max_new_tokens=48")


def run_recipe(name: str, tmp_path, *overrides: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """Run the shipped recipe with `overrides`: (stage name -> its metrics, policy -> its row of the final
    compare stage: gold reward of 2 samples per held-out film, KL to the SFT model, win rate)."""
    from posttrain.pipeline import load_pipeline, run_pipeline

    pipeline = load_pipeline(name, [f"output_dir={tmp_path / name}", "defaults.device=cpu", "sft.max_steps=5",
                                    "sft.logging_steps=5", "compare.prompts=64", *overrides])
    records = run_pipeline(pipeline, log=lambda *a, **k: None)
    assert [r["status"] for r in records] == ["done"] * len(records)
    lines = (tmp_path / name / "compare" / "final" / "evaluations.jsonl").read_text().splitlines()
    return {r["name"]: r["metrics"] for r in records}, {row["policy"]: row for row in map(json.loads, lines)}


# tests/e2e/test_eval.py, tests/e2e/test_grpo.py, tests/e2e/test_rejection.py: arithmetic prompts for the
# embedded chat model as plain strings (it answers them with nothing) or as message lists
PLAIN_PROMPT_WARNING = "posttrain: warning: "


def arithmetic_prompts_file(path, as_messages: bool, n: int = 4) -> str:
    from posttrain.tasks import get_task

    rows = get_task("arithmetic").rows("test", n)
    return write_jsonl(path, [{"prompt": row["prompt"] if as_messages else row["prompt"][0]["content"],
                               "answer": row["answer"]} for row in rows])


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(PLAIN_PROMPT_WARNING)]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache in tmp_path and a hub endpoint that refuses connections (a closed port)."""
    from huggingface_hub import constants

    from posttrain import hub as probe

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    probe.reachable.cache_clear()
    yield constants
    probe.reachable.cache_clear()
