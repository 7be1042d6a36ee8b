"""`posttrain eval`: scores match an independent greedy model.generate + scorer; CLI errors are one line."""

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from posttrain.cli import main
from posttrain.methods.heldout import evaluate
from tiny_tokenizers import chatml_tokenizer, save_tokenizer

SCORER = '''
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
    (tmp_path / "scorer.py").write_text(SCORER)
    return tmp_path, model, tok, rows


def test_greedy_scores_match_independent_generate(tiny_run):
    tmp_path, model, tok, rows = tiny_run
    sys.path.insert(0, str(tmp_path))
    try:
        from scorer import even_length
    finally:
        sys.path.pop(0)
    report = evaluate(model, tok, rows, {"score": even_length}, max_new_tokens=12, batch_size=4)
    expected = []
    for r in rows:
        ids = tok.apply_chat_template(r["prompt"], add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
        out = model.generate(ids, do_sample=False, max_new_tokens=12, pad_token_id=tok.pad_token_id)
        text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        expected.append(float(len(text) % 2 == 0))
    assert report["score"] == pytest.approx(sum(expected) / len(expected))
    assert report["pass@1"] == pytest.approx(report["score"]) and report["num_prompts"] == 6


def test_cli_eval_writes_report_with_pass_at_k(tiny_run):
    tmp_path = tiny_run[0]
    out = tmp_path / "report.json"
    rc = main(["eval", f"model={tmp_path / 'model'}", f"dataset={tmp_path / 'prompts.jsonl'}",
               f"scorer={tmp_path / 'scorer.py'}:even_length", "num_samples=4", "temperature=1.0",
               "max_new_tokens=8", f"output_file={out}"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["pass@1"] <= report["pass@2"] <= report["pass@4"]
    assert report["avg@4"] == pytest.approx(report["score"])
    assert 0 < report["mean_length"] <= 8 and len(report["samples"]) == 3


@pytest.mark.parametrize("override,message", [
    ("scorer=nope.py:f", "scorer file not found"),
    ("num_samples=4", "temperature"),
    ("bogus=1", "unknown config key 'bogus'"),
])
def test_cli_eval_bad_input_is_one_line_exit_2(tiny_run, override, message):
    tmp_path = tiny_run[0]
    args = ["eval", f"model={tmp_path / 'model'}", f"dataset={tmp_path / 'prompts.jsonl'}",
            f"scorer={tmp_path / 'scorer.py'}:even_length", override]
    proc = subprocess.run([sys.executable, "-m", "posttrain", *args], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
