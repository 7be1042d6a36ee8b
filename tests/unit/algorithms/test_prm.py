"""PRM training (`posttrain prm`): where the step labels sit (plain and chat-templated prompts, one-
and multi-token separators), a short run on a tiny random Llama that learns step labels, final/
reloading as a plain token classifier whose step scores reproduce the run's held-out accuracy, and
bad rows as one-line errors with exit code 2."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForTokenClassification

from conftest import read_metrics, run_cli, write_jsonl
from posttrain.algorithms.prm import (
    IGNORE_INDEX, PRMConfig, ProcessRewardModeling, build_prm, collate_steps, load_items, run_prm, tokenize_row,
)
from posttrain.cli import main
from posttrain.config import build_config
from posttrain.errors import DataError
from posttrain.rewards.process import step_scores
from posttrain.tasks.arithmetic import make_problem, worked_solution
from tiny_tokenizers import chatml_tokenizer, llama3_tokenizer


def prm_config(**values) -> PRMConfig:
    defaults = dict(dataset="unused.jsonl", max_length=256, batch_size=16, logging_steps=8, device="cpu",
                    lr_scheduler="constant")
    return build_config(PRMConfig, {**defaults, **values})


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


# ------------------------------------------------------------------------------------- training


def think_lines(text: str) -> list[str]:
    return text.split("<think>\n", 1)[1].split("\n</think>", 1)[0].split("\n")


def stepwise_rows(n: int, seed: int) -> list[dict]:
    """Worked arithmetic solutions as steps. A sloppy solution (worked_solution with slips) is bad
    from its first wrong line on (Math-Shepherd's labels: it can no longer reach the answer), and
    its writer hedges ("maybe") once slipped: a cue a tiny random model can learn at the step's own
    separator; the arithmetic itself it cannot."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        problem = make_problem(rng, rng.choice((1, 2, 3)))
        clean = think_lines(worked_solution(problem)[0])
        steps = think_lines(worked_solution(problem, rng, slip_prob=0.25)[0]) if rng.random() < 0.5 else clean
        first = next((k for k, (a, b) in enumerate(zip(steps, clean)) if a != b), min(len(steps), len(clean)))
        rows.append({"prompt": problem.question, "completions": [("maybe " if k >= first else "") + s for k, s in enumerate(steps)],
                     "labels": [k < first for k in range(len(steps))]})
    return rows


def test_short_run_learns_step_labels_and_final_reloads(tiny_llama, tmp_path):
    train_rows, held_rows = stepwise_rows(512, 0), stepwise_rows(96, 1)
    assert 0.2 < sum(not b for r in held_rows for b in r["labels"]) / sum(len(r["labels"]) for r in held_rows) < 0.5
    train, held = write_jsonl(tmp_path / "train.jsonl", train_rows), write_jsonl(tmp_path / "held.jsonl", held_rows)
    config = prm_config(model=tiny_llama, dataset=train, eval_dataset=held, output_dir=str(tmp_path / "run"),
                        learning_rate=3e-3, num_epochs=2, eval_steps=32)
    from posttrain.models.loading import load_tokenizer

    tok = load_tokenizer(tiny_llama)
    algorithm = ProcessRewardModeling(tok.pad_token_id)
    torch.manual_seed(config.seed)  # the model the run starts from
    start = build_prm(config, tok.pad_token_id).eval()
    with torch.no_grad():
        _, before = algorithm.loss(start, algorithm.collate(load_items(tok, held, None, config, is_eval=True)))
    before = float(before["accuracy"][0] / before["accuracy"][1])

    last = run_prm(config)
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records if "eval_accuracy" in r] == [32, 64]
    assert last["eval_accuracy"] > 0.95 and last["eval_accuracy"] > before + 0.25, (before, last)
    assert last["eval_bad_step_accuracy"] > 0.9

    final = tmp_path / "run" / "final"
    model = AutoModelForTokenClassification.from_pretrained(final).eval()
    assert model.config.num_labels == 2 and model.config.id2label == {0: "bad", 1: "good"}
    assert model.config.prm_step_separator == "\n"
    scores = step_scores(model, tok, [r["prompt"] for r in held_rows], ["\n".join(r["completions"]) for r in held_rows])
    pairs = [(p > 0.5, lab) for ps, r in zip(scores, held_rows) for p, lab in zip(ps, r["labels"], strict=True)]
    assert sum(a == b for a, b in pairs) / len(pairs) == pytest.approx(last["eval_accuracy"], abs=1e-9)


# ------------------------------------------------------------------------------------ bad input


def test_labels_length_mismatch_through_the_real_cli(tmp_path, tiny_llama):
    good = {"prompt": "Hi", "completions": [" a", " b"], "labels": [True, False]}
    data = write_jsonl(tmp_path / "bad.jsonl", [good, {**good, "labels": [True]}])
    proc = run_cli("prm", f"model={tiny_llama}", f"dataset={data}", f"output_dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"{data}, row 1, column 'labels': has 1 labels for 2 steps in 'completions'" in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad, column, message", [
    ({"prompt": "Hi", "completions": [" a"]}, "labels", "is missing"),
    ({"prompt": "Hi", "completions": " a", "labels": [True]}, "completions", "expected a non-empty list of step strings"),
    ({"prompt": "Hi", "completions": [" a"], "labels": ["yes"]}, "labels", "expected a list of booleans"),
    ({"prompt": 3, "completions": [" a"], "labels": [True]}, "prompt", "expected a string or a list of messages"),
])
def test_bad_rows_are_one_line_exit_2(bad, column, message, tmp_path, tiny_llama, capsys):
    data = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Hi", "completions": [" a"], "labels": [True]}, bad])
    code = main(["prm", f"model={tiny_llama}", f"dataset={data}", f"output_dir={tmp_path / 'run'}", "device=cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{data}, row 1, column '{column}': {message}" in err
    assert not (tmp_path / "run").exists()


def test_config_errors(tmp_path, capsys):
    assert main(["prm"]) == 2
    assert "set dataset=FILE with stepwise rows" in capsys.readouterr().err


def test_lora_trains_adapters_and_head_and_merges_into_final(tiny_llama, tmp_path):
    from posttrain.models.loading import load_tokenizer
    from posttrain.train.loop import prepare_model

    data = write_jsonl(tmp_path / "steps.jsonl", stepwise_rows(8, 0))
    config = prm_config(model=tiny_llama, dataset=data, output_dir=str(tmp_path / "run"), max_steps=2, lora=True, lora_r=4,
                       batch_size=4)
    wrapped = prepare_model(build_prm(config, load_tokenizer(tiny_llama).pad_token_id), config)
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert any("score" in n for n in trainable) and all("lora_" in n or "score" in n for n in trainable)
    head = wrapped.get_base_model().score.original_module.weight.detach().clone()
    run_prm(config)
    final = AutoModelForTokenClassification.from_pretrained(tmp_path / "run" / "final")
    assert not torch.allclose(final.score.weight, head)  # trained, and merged into a plain token classifier


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
