"""`posttrain constitution` end to end: a bad principles file is one line and exit 2; the CLI samples, critiques,
revises and fine-tunes, after SFT the policy gives its revisions a lower NLL, final/ loads, and resume
reuses the generations."""

import json
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import run_cli


def test_bad_principles_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("principles: 3\n")
    result = run_cli("constitution", f"principles={bad}", f"output_dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "principles file" in result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["prompts=4", "batch_size=8"], "prompts=4 gives 4 SFT examples"),
    (["dataset={two_prompts}", "prompts=0", "batch_size=4"], "gives 2 SFT examples (one revision per prompt)"),
], ids=["prompts", "dataset"])
def test_too_few_prompts_for_one_sft_step_fails_before_any_sampling(tmp_path, args, fragment):
    two_prompts = tmp_path / "two.jsonl"
    two_prompts.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    out = tmp_path / "run"
    start = time.monotonic()
    result = run_cli("constitution", *(a.format(two_prompts=two_prompts) for a in args), "max_steps=1", f"output_dir={out}")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, result.stderr
    assert "lower batch_size" in result.stderr
    assert not (out / "revisions.jsonl").exists() and time.monotonic() - start < 30  # nothing sampled


def _completion_nll(model, tokenizer, rows) -> float:
    """Token-mean NLL of each row's completion after its chat-templated prompt, by a plain forward."""
    total, count = 0.0, 0
    for row in rows:
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False)
        full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=False)
        assert full[:len(prompt)] == prompt
        with torch.no_grad():
            logits = model(torch.tensor([full])).logits[0, len(prompt) - 1:-1]
        total += torch.nn.functional.cross_entropy(logits, torch.tensor(full[len(prompt):]), reduction="sum").item()
        count += len(full) - len(prompt)
    return total / count


def test_cli_runs_critique_revision_and_sft_final_loads_and_resume_reuses_generations(tmp_path):
    principles = tmp_path / "constitution.yaml"
    principles.write_text("- Is the review rude?\n- Is the review false?\n")
    critique = tmp_path / "critique.txt"
    critique.write_text("Principle: {principle}\nReview: {response}\nCritique:")
    revision = tmp_path / "revision.txt"
    revision.write_text("Review: {response}\nCritique: {critique}\nRewrite:")
    out = tmp_path / "run"
    args = ("prompts=4", "revisions=1", "max_new_tokens=32", "critique_max_new_tokens=16", "revision_max_new_tokens=32",
            "max_steps=3", "batch_size=4", "learning_rate=1e-3", f"principles={principles}",
            f"critique_template={critique}", f"revision_template={revision}", f"output_dir={out}")
    result = run_cli("constitution", *args)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (out / "revisions.jsonl").read_text().splitlines()]
    assert len(records) == 4
    for rec in records:
        p = rec["principles"][0]
        assert p in ("Is the review rude?", "Is the review false?")
        assert rec["critique_requests"] == [f"Principle: {p}\nReview: {rec['response']}\nCritique:"]
        assert rec["revision_requests"] == [f"Review: {rec['response']}\nCritique: {rec['critiques'][0]}\nRewrite:"]
    sft_data = [json.loads(line) for line in (out / "sft_data.jsonl").read_text().splitlines()]
    assert sft_data == [{"prompt": r["prompt"], "completion": [{"role": "assistant", "content": r["final"]}]} for r in records]
    steps = [json.loads(line) for line in (out / "sft" / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert steps and steps[-1]["step"] == 3
    trained = AutoModelForCausalLM.from_pretrained(out / "final")
    from posttrain.models.loading import load_causal_lm

    base = load_causal_lm("embedded")
    moved = [not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), base.state_dict().values())]
    assert any(moved)
    # The stage's metric: SFT moved the policy toward its own revisions (their NLL fell).
    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    assert _completion_nll(trained, tokenizer, sft_data) < _completion_nll(base, tokenizer, sft_data) - 0.05
    assert not (out / "final.tmp").exists()

    # A crashed run (no final/) resumed with the same settings reuses the finished generations.
    import shutil

    before = (out / "revisions.jsonl").read_text()
    shutil.rmtree(out / "final")
    again = run_cli("constitution", *args, "resume=true")
    assert again.returncode == 0, again.stderr
    assert "reusing the 4 revisions" in again.stdout
    assert (out / "revisions.jsonl").read_text() == before
    AutoModelForCausalLM.from_pretrained(out / "final")
