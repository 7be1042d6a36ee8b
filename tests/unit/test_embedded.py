"""The embedded model directory: loads offline with plain transformers, is small, and its tokenizer
has the special tokens, single-token tags and chat-template prefix property the data layer relies on."""

import os

import pytest
import torch

from posttrain.embedded import EMBEDDED_JUDGE_DIR, EMBEDDED_MODEL_DIR, EMBEDDED_NAME
from posttrain.tasks import get_task

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR)


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(EMBEDDED_MODEL_DIR).eval()


def test_directory_contents_and_size():
    assert EMBEDDED_NAME == "embedded"
    names = set(os.listdir(EMBEDDED_MODEL_DIR))
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    # Both shipped models together (the judge is stored in bfloat16) stay within the package budget.
    total = sum(os.path.getsize(d / n) for d in (EMBEDDED_MODEL_DIR, EMBEDDED_JUDGE_DIR) for n in os.listdir(d))
    assert total <= 25 * 2**20, f"{total / 2**20:.1f} MB"


def test_embedded_judge_picks_the_more_positive_review_of_unseen_films():
    """The shipped judge, by position-swapped letter probabilities, on held-out pairs of the judge task."""
    from posttrain.models.loading import load_causal_lm
    from posttrain.rewards.judge import pairwise_judge
    from posttrain.tasks.sentiment import review_prompt

    assert next(load_causal_lm("embedded-judge").parameters()).dtype == torch.float32  # bf16 on disk, judged in fp32
    rows = get_task("sentiment_judge").rows("test", 100)
    prompts, first, second = [review_prompt(r["title"]) for r in rows], [r["review_a"] for r in rows], [r["review_b"] for r in rows]

    def accuracy(model: str) -> float:
        p_first = pairwise_judge(model=model, method="logprob").preferences(prompts, first, second)
        return sum((p > 0.5) == (r["answer"] == "A") for p, r in zip(p_first, rows)) / len(rows)

    trained, base = accuracy("embedded-judge"), accuracy("embedded")  # base: the untrained embedded model
    assert trained >= 0.75 and base < 0.65, (trained, base)


def test_special_tokens_distinct(tok, model):
    ids = [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id]
    assert None not in ids and len(set(ids)) == 3
    assert model.config.eos_token_id == tok.eos_token_id
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert model.config.vocab_size >= len(tok)
    assert model.config.tie_word_embeddings


@pytest.mark.parametrize("tag", ["<think>", "</think>", "<answer>", "</answer>"])
def test_tags_are_single_tokens_kept_by_decode(tok, tag):
    ids = tok(f"x {tag}\n12", add_special_tokens=False)["input_ids"]
    assert tok.convert_tokens_to_ids(tag) in ids
    assert tag in tok.decode(ids, skip_special_tokens=True)


def test_digits_are_single_tokens(tok):
    tokens = tok.convert_ids_to_tokens(tok("What is 347 + 2851?", add_special_tokens=False)["input_ids"])
    digit_tokens = [t for t in tokens if any(c.isdigit() for c in t)]
    assert len(digit_tokens) == 7


@pytest.mark.parametrize("name", ["arithmetic", "sentiment"])
def test_chat_template_prefix_and_eos(tok, name):
    row = get_task(name).rows("train", 1)[0]
    prompt = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
    assert full.startswith(prompt)
    assert full.endswith(tok.eos_token)
    assert prompt.startswith(tok.bos_token) and full.count(tok.bos_token) == 1
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    f_ids = tok(full, add_special_tokens=False)["input_ids"]
    assert f_ids[: len(p_ids)] == p_ids and f_ids[-1] == tok.eos_token_id
    # tokenizing rendered text with default settings adds nothing: no double bos
    assert tok(full)["input_ids"] == f_ids


def test_multi_turn_template(tok):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text == ("<|bos|><|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>\n"
                    "<|user|>\nBye<|end|>\n<|assistant|>\n")


def test_model_generates_and_stops(tok, model):
    row = get_task("arithmetic").rows("test", 1)[0]
    text = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=200, do_sample=False)
    new = out[0, enc["input_ids"].shape[1]:]
    assert new[-1].item() == tok.eos_token_id
    completion = tok.decode(new, skip_special_tokens=True)
    assert get_task("arithmetic").scorers["format"](None, [completion]) == [1.0]


# The template before tools were added (issue 16): tool-free conversations must render byte-identically.
TOOL_FREE_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{% if not loop.first %}{{ '\\n' }}{% endif %}"
                      "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token }}{% endfor %}"
                      "{% if add_generation_prompt %}{{ '\\n<|assistant|>\\n' }}{% endif %}")


def test_shipped_templates_are_the_built_one():
    from posttrain.embedded.tokenizer_build import CHAT_TEMPLATE

    for directory in (EMBEDDED_MODEL_DIR, EMBEDDED_JUDGE_DIR):
        assert (directory / "chat_template.jinja").read_text() == CHAT_TEMPLATE


@pytest.mark.parametrize("name", ["arithmetic", "sentiment"])
def test_tool_free_conversations_render_as_before(tok, name):
    for row in get_task(name).rows("train", 20):
        for messages, generation in ((row["prompt"], True), (row["prompt"] + row["completion"], False)):
            assert tok.apply_chat_template(messages, add_generation_prompt=generation, tokenize=False) == \
                tok.apply_chat_template(messages, add_generation_prompt=generation, tokenize=False, chat_template=TOOL_FREE_TEMPLATE)


def test_template_renders_tools_tool_messages_and_tool_calls(tok):
    tools = [{"type": "function", "function": {"name": "calculate", "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}},
             {"type": "function", "function": {"name": "submit", "parameters": {"type": "object", "properties": {}}}}]
    messages = [{"role": "user", "content": "12*13?"},
                {"role": "assistant", "content": "",
                 "tool_calls": [{"type": "function", "function": {"name": "calculate", "arguments": {"expression": "12*13"}}}]},
                {"role": "tool", "name": "calculate", "content": "156"},
                {"role": "assistant", "content": "<answer>156</answer>"}]
    assert tok.apply_chat_template(messages, tools=tools, tokenize=False) == (
        "<|bos|><|system|>\nTools: calculate(expression) submit()<|end|>\n<|user|>\n12*13?<|end|>\n"
        '<|assistant|>\n<tool_call>\n{"name": "calculate", "arguments": {"expression": "12*13"}}\n</tool_call><|end|>\n'
        "<|tool|>\n156<|end|>\n<|assistant|>\n<answer>156</answer><|end|>")
    prompt = tok.apply_chat_template(messages[:3], tools=tools, tokenize=False, add_generation_prompt=True)
    assert tok.apply_chat_template(messages, tools=tools, tokenize=False).startswith(prompt)  # the prefix property holds
