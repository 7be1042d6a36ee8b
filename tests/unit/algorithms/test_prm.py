"""PRM training's pieces: where the step labels sit (plain and chat-templated prompts, one- and
multi-token separators, truncation), and the model, collator and loss on other architectures."""

from __future__ import annotations

import pytest
import torch

from conftest import write_jsonl
from prm_data import prm_config, stepwise_rows
from posttrain.algorithms.prm import (
    IGNORE_INDEX, ProcessRewardModeling, build_prm, collate_steps, load_items, tokenize_row,
)
from posttrain.errors import DataError
from tiny_tokenizers import chatml_tokenizer, llama3_tokenizer


def labelled(tokenizer, item) -> list[tuple[str, str, int]]:
    """(decoded text up to and including each labelled token, that token's text, its label)."""
    ids = item["input_ids"]
    return [(tokenizer.decode(ids[:p + 1]), tokenizer.decode(ids[p:p + 1]), lab)
            for p, lab in zip(item["positions"], item["labels"])]


# ------------------------------------------------------------------------------ label placement


def test_labels_sit_on_each_steps_separator_string_prompt():
    tok = llama3_tokenizer()
    row = {"prompt": "What is 2 + 2?", "completions": [" 2+2=4", " so 4"], "labels": [True, False]}
    item = tokenize_row(tok, row, prm_config(), last_step_only=False)
    assert item["input_ids"][0] == tok.bos_token_id  # the prompt is tokenized as tokenizer(prompt) does
    assert labelled(tok, item) == [
        ("<|begin_of_text|>What is 2 + 2? 2+2=4\n", "\n", 1),
        ("<|begin_of_text|>What is 2 + 2? 2+2=4\n so 4\n", "\n", 0),
    ]
    assert item["positions"][-1] == len(item["input_ids"]) - 1
    batch = collate_steps([item, tokenize_row(tok, {**row, "completions": [" 4"], "labels": [True]}, prm_config(), False)],
                          tok.pad_token_id)
    labels = batch["labels"]
    assert labels.shape == batch["input_ids"].shape and batch["num_steps"] == 3
    want = torch.full_like(labels, IGNORE_INDEX)
    want[0, item["positions"]] = torch.tensor([1, 0])
    want[1, len(tok("What is 2 + 2? 4\n")["input_ids"]) - 1] = 1
    assert torch.equal(labels, want)
    assert batch["attention_mask"].sum(1).tolist() == [len(item["input_ids"]), len(tok("What is 2 + 2? 4\n")["input_ids"])]


def test_chat_template_prompt_and_multi_token_separator():
    tok = chatml_tokenizer()
    separator = " ки\n"  # Math-Shepherd's step tag: several byte-level tokens
    assert len(tok.encode(separator, add_special_tokens=False)) > 1
    row = {"prompt": [{"role": "user", "content": "What is 12 + 5?"}], "completions": ["2+5=7", "1+0=1", "17"],
           "labels": [True, True, False]}
    item = tokenize_row(tok, row, prm_config(step_separator=separator), last_step_only=False)
    head = "<|im_start|>user\nWhat is 12 + 5?<|im_end|>\n<|im_start|>assistant\n"
    assert labelled(tok, item) == [
        (head + "2+5=7 ки\n", "\n", 1),
        (head + "2+5=7 ки\n1+0=1 ки\n", "\n", 1),
        (head + "2+5=7 ки\n1+0=1 ки\n17 ки\n", "\n", 0),
    ]
    last = tokenize_row(tok, row, prm_config(step_separator=separator), last_step_only=True)
    assert last["input_ids"] == item["input_ids"] and last["positions"] == item["positions"][-1:] and last["labels"] == [0]


def test_truncation_keeps_the_steps_that_fit(tmp_path):
    tok = llama3_tokenizer()
    row = {"prompt": "Hi", "completions": [" a", " b", " c"], "labels": [True, False, True]}
    full = tokenize_row(tok, row, prm_config(), last_step_only=False)
    cut = tokenize_row(tok, row, prm_config(max_length=full["positions"][1] + 2, truncation=True), last_step_only=False)
    assert cut["positions"] == full["positions"][:2] and cut["labels"] == [1, 0]
    assert len(cut["input_ids"]) == full["positions"][1] + 2
    data = write_jsonl(tmp_path / "steps.jsonl", [row])
    with pytest.raises(DataError, match=rf"{data}, row 0, column 'completions': is {len(full['input_ids'])} tokens"):
        load_items(tok, data, None, prm_config(max_length=4))
    held = load_items(tok, data, None, prm_config(train_on_last_step_only=True), is_eval=True)
    assert held[0]["labels"] == [1, 0, 1]  # held-out data keeps every step


@pytest.mark.parametrize("arch", ["tiny_qwen2", "tiny_gpt2"])
def test_other_architectures_build_and_train(arch, request, tmp_path):
    path = request.getfixturevalue(arch)
    from posttrain.models.loading import load_tokenizer

    tok = load_tokenizer(path)
    data = write_jsonl(tmp_path / "steps.jsonl", stepwise_rows(8, 0))
    config = prm_config(model=path, dataset=data)
    model = build_prm(config, tok.pad_token_id)
    algorithm = ProcessRewardModeling(tok.pad_token_id)
    batch = algorithm.collate(load_items(tok, data, None, config))
    loss, metrics = algorithm.loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and metrics["accuracy"][1] == batch["num_steps"] == sum(len(r["labels"]) for r in stepwise_rows(8, 0))
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
