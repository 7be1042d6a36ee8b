"""Plain-string prompts to a chat model: the embedded model (trained on chat messages) ends its turn at
once on arithmetic questions given as strings, and that batch earns the one warning; the same questions
as message lists, or a tokenizer without a chat template, do not."""

from __future__ import annotations

import pytest

from posttrain.data.tokenize import tokenize_prompt
from posttrain.generation import SamplingParams, generate
from posttrain.models.loading import load_causal_lm, load_tokenizer
from posttrain.rollout.plain_prompts import plain_prompt_warning
from posttrain.tasks import get_task
from tiny_tokenizers import plain_tokenizer

QUESTIONS = [row["prompt"][0]["content"] for row in get_task("arithmetic").rows("test", 4)]  # "What is 914 + 807?"


@pytest.fixture(scope="module")
def embedded():
    return load_tokenizer("embedded"), load_causal_lm("embedded")


def _texts(embedded, prompts: list) -> list[str]:
    tokenizer, model = embedded
    ids = [tokenize_prompt(tokenizer, prompt) for prompt in prompts]
    return generate(model, tokenizer, ids, SamplingParams(max_new_tokens=48, n=2, seed=0)).texts


def test_plain_string_questions_get_empty_completions_and_the_warning(embedded):
    texts = _texts(embedded, QUESTIONS)
    empty = sum(text == "" for text in texts)
    assert empty >= len(texts) / 2, texts  # measured: 8 of 8
    line = plain_prompt_warning(embedded[0], QUESTIONS, texts)
    assert line == (f"posttrain: warning: {empty} of 8 completions are empty: the prompts are plain strings, which are "
                    "tokenized without the chat template, and this chat model ends its turn at once; give each prompt as "
                    'a message list, {"prompt": [{"role": "user", "content": "..."}]}, as in examples/prompts.jsonl')


def test_message_list_questions_are_answered_and_earn_no_warning(embedded):
    messages = [[{"role": "user", "content": q}] for q in QUESTIONS]
    texts = _texts(embedded, messages)
    assert all(text.startswith("<think>") for text in texts), texts  # the worked solution begins
    assert plain_prompt_warning(embedded[0], messages, texts) is None


def test_no_warning_without_a_chat_template_or_with_most_completions_written():
    questions, empty = QUESTIONS[:2], ["", ""]
    assert plain_prompt_warning(plain_tokenizer(), questions, empty) is None  # strings are the only format there
    tokenizer = load_tokenizer("embedded")
    assert plain_prompt_warning(tokenizer, questions, ["", "a review", "more", "text"]) is None  # 1 of 4 empty
    assert plain_prompt_warning(tokenizer, questions, ["", " ", "text", "more"]).startswith("posttrain: warning: 2 of 4")
