"""Constitutional AI's supervised stage: sample, critique against a principle, revise, SFT.

The embedded model cannot really follow critique instructions, so the revisions are not better
reviews; these tests check the machinery (the exact requests built, how many generations run, which
principle is drawn, the SFT data) and the stage's own metric: after SFT the policy assigns its
revisions a lower NLL, i.e. it now writes the revised answers directly, and final/ loads."""

import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import run_cli
from posttrain.algorithms.constitution import ConstitutionConfig, Generator, critique_and_revise, sft_rows
from posttrain.config import build_config
from posttrain.errors import ConfigError
from posttrain.methods import critique as cq

CRITIQUE = "P<{principle}> R<{response}> Q<{prompt}>"
REVISION = "C<{critique}> R<{response}> P<{principle}>"


@pytest.fixture(scope="module")
def run_records():
    from posttrain.tasks.sources import load_rows

    torch.set_num_threads(1)
    config = build_config(ConstitutionConfig, {"revisions": 2, "max_new_tokens": 24, "critique_max_new_tokens": 12,
                                               "revision_max_new_tokens": 24, "generation_batch_size": 2, "seed": 3})
    rows = load_rows("task:sentiment:train:3")
    policy, critic = Generator("embedded", config), Generator("embedded", config)
    principles = ["be kind", "be true", "be brief"]
    records = critique_and_revise(rows, policy, critic, config, principles, CRITIQUE, REVISION)
    again = critique_and_revise(rows, policy, critic, config, principles, CRITIQUE, REVISION)
    return rows, policy, critic, principles, records, again


def test_requests_hold_the_principle_and_the_previous_text_in_the_template_places(run_records):
    rows, _, _, _, records, _ = run_records
    for row, rec in zip(rows, records):
        asked = row["prompt"][0]["content"]
        previous = rec["response"]
        for r in range(2):
            principle, critique = rec["principles"][r], rec["critiques"][r]
            assert rec["critique_requests"][r] == f"P<{principle}> R<{previous}> Q<{asked}>"
            assert rec["revision_requests"][r] == f"C<{critique}> R<{previous}> P<{principle}>"
            previous = rec["revisions"][r] or previous  # round 2 critiques round 1's revision
        assert rec["final"] == previous
    assert any(rec["final"] != rec["response"] for rec in records)


def test_generation_counts_are_prompts_times_revisions(run_records):
    rows, policy, critic, _, records, _ = run_records
    # Two runs of critique_and_revise: each samples 3 responses, 3 x 2 critiques and 3 x 2 revisions.
    assert policy.calls == 2 * len(rows)
    assert critic.calls == 2 * (2 * len(rows) * 2)
    assert all(len(rec[k]) == 2 for rec in records for k in ("critiques", "revisions", "principles"))


def test_principles_are_drawn_with_the_seed_and_the_run_is_reproducible(run_records):
    _, _, _, principles, records, again = run_records
    rng = random.Random(3)
    assert [rec["principles"] for rec in records] == [[rng.choice(principles) for _ in range(2)] for _ in range(3)]
    assert records == again
    drawn = cq.draw_principles(["a", "b", "c", "d"], 50, 3, seed=7)
    assert drawn == cq.draw_principles(["a", "b", "c", "d"], 50, 3, seed=7)
    assert drawn != cq.draw_principles(["a", "b", "c", "d"], 50, 3, seed=8)
    assert {p for row in drawn for p in row} == {"a", "b", "c", "d"}


def test_sft_data_is_exactly_prompt_and_final_revision():
    chat = {"prompt": [{"role": "user", "content": "q"}], "final": "better"}
    plain = {"prompt": "q2", "final": "best"}
    assert sft_rows([chat, plain]) == [
        {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "better"}]},
        {"prompt": "q2", "completion": "best"},
    ]


def test_templates_and_principles_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown placeholder\(s\) answer"):
        cq.check_template("{answer} {response} {principle}", "critique", cq.CRITIQUE_FIELDS, {"response", "principle"})
    with pytest.raises(ConfigError, match=r"lacks \{critique\}"):
        cq.check_template("{response}", "revision", cq.REVISION_FIELDS, {"response", "critique"})
    assert cq.load_principles(None) == cq.DEFAULT_PRINCIPLES
    good = tmp_path / "good.yaml"
    good.write_text("principles:\n  - ' be honest '\n  - be kind\n")
    assert cq.load_principles(str(good)) == ["be honest", "be kind"]
    for text in ("[]", "- 1\n- 2\n", "principles: [a, ''", "just a string"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match="principles file"):
            cq.load_principles(str(bad))


def test_bad_principles_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("principles: 3\n")
    result = run_cli("constitution", f"principles={bad}", f"output_dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "principles file" in result.stderr


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
