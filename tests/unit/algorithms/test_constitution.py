"""Constitutional AI's supervised stage: sample, critique against a principle, revise, SFT.

The embedded model cannot really follow critique instructions, so the revisions are not better
reviews; these tests check the machinery (the exact requests built, how many generations run, which
principle is drawn, the SFT data). The stage's own metric (after SFT the policy assigns its
revisions a lower NLL) is in tests/e2e/test_constitution.py."""

import random

import pytest
import torch

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


def test_too_few_prompts_for_one_sft_step_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        build_config(ConstitutionConfig, {"prompts": 4, "batch_size": 2, "gradient_accumulation_steps": 3})
    assert str(info.value) == ("prompts=4 gives 4 SFT examples (one revision per prompt), fewer than one optimizer step "
                               "needs (batch_size x gradient_accumulation_steps x processes = 6); raise prompts or lower "
                               "batch_size")
    assert build_config(ConstitutionConfig, {"prompts": 6, "batch_size": 2, "gradient_accumulation_steps": 3}).prompts == 6
    assert build_config(ConstitutionConfig, {"prompts": 0, "batch_size": 64}).prompts == 0  # every prompt: counted on load
