"""`posttrain eval harness=lm_eval`: an lm-evaluation-harness task runs on a saved model directory (a run's final/:
weights and tokenizer) through lm-eval's HF backend. The task is a local one (a YAML on a jsonl, no hub); its
accuracy and every document's chosen answer equal the argmax of log-likelihoods computed here with transformers."""

import json
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import write_jsonl
from posttrain.cli import main
from posttrain.eval.harness import choice_task_yaml

QUESTIONS = [("What is 2 + 2?", ["3", "4", "5"], 1), ("What is 10 - 3?", ["7", "6", "13"], 0),
             ("What is 3 * 3?", ["6", "12", "9"], 2), ("What is 8 + 1?", ["9", "7", "81"], 0),
             ("Is 7 odd?", ["yes", "no"], 0)]


def continuation_logprob(model, tokenizer, context: str, continuation: str) -> float:
    """log p(continuation | context): the whole text's tokens past the context's, scored by one forward pass."""
    context_ids = tokenizer(context)["input_ids"]
    ids = tokenizer(context + continuation)["input_ids"]
    with torch.no_grad():
        logps = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    return sum(logps[i - 1, ids[i]].item() for i in range(len(context_ids), len(ids)))


def test_a_local_lm_eval_task_on_a_saved_model_matches_its_own_log_likelihoods(tiny_llama, tmp_path, monkeypatch):
    pytest.importorskip("lm_eval", reason="harness=lm_eval needs the lm_eval extra")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))  # lm-eval's `datasets` json load caches here
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"question": q, "choices": c, "label": y} for q, c, y in QUESTIONS])
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "local_arith.yaml").write_text(choice_task_yaml("local_arith", rows))
    out = tmp_path / "lm_eval.json"
    rc = main(["eval", f"model={tiny_llama}", "harness=lm_eval", "tasks=[local_arith]", f"include_path={tmp_path / 'tasks'}",
               "device=cpu", "batch_size=8", f"show_samples={len(QUESTIONS)}", f"output_file={out}"])
    assert rc == 0
    report = json.loads(out.read_text())

    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_llama).eval(), AutoTokenizer.from_pretrained(tiny_llama)
    chosen = []
    for question, choices, _ in QUESTIONS:  # lm-eval's multiple_choice: " " + choice after the prompt, highest sum wins
        context = f"Question: {question}\nAnswer:"
        scores = [continuation_logprob(model, tokenizer, context, " " + c) for c in choices]
        chosen.append(max(range(len(choices)), key=scores.__getitem__))
    expected = sum(c == y for c, (_, _, y) in zip(chosen, QUESTIONS)) / len(QUESTIONS)
    assert report["local_arith/acc"] == report["score"] == pytest.approx(expected)
    assert report["harness"] == "lm_eval" and report["dataset"] == "lm_eval local_arith"
    assert report["num_documents"] == {"local_arith": len(QUESTIONS)}
    assert [s["completion"] for s in report["samples"]] == [" " + c[i] for i, (_, c, _) in zip(chosen, QUESTIONS)]
    assert [s["score"] for s in report["samples"]] == [float(c == y) for c, (_, _, y) in zip(chosen, QUESTIONS)]


def test_without_lm_eval_it_is_one_config_error_naming_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if not installed: `import lm_eval` raises ImportError
    assert main(["eval", "harness=lm_eval", "tasks=[arc_easy]", f"output_file={tmp_path / 'eval.json'}"]) == 2
    assert not (tmp_path / "eval.json").exists()
    err = capsys.readouterr().err.strip()
    assert err == "posttrain: error: harness=lm_eval needs the lm-eval package: pip install 'posttrain[lm_eval]'"
