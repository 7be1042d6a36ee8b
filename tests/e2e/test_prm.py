"""`posttrain prm` end to end: a short run on a tiny random Llama learns step labels, final/ reloads as a plain token
classifier whose step scores reproduce the run's held-out accuracy, LoRA trains adapters and head and
merges, and bad rows or options are one-line errors with exit code 2."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForTokenClassification

from conftest import read_metrics, run_cli, write_jsonl
from prm_data import prm_config, stepwise_rows
from posttrain.algorithms.prm import (
    ProcessRewardModeling, build_prm, load_items, run_prm,
)
from posttrain.cli import main
from posttrain.rewards.process import step_scores


# ------------------------------------------------------------------------------------- training


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
