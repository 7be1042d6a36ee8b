"""Agent data formats (data/agent_rows.py): Agent DPO step pairs converted to preference rows and
trained on by `posttrain dpo`; ranked trajectory pairs validated with errors that name row, column and step."""

from __future__ import annotations

import math

import pytest

from conftest import dpo_config, read_metrics, write_jsonl
from posttrain.algorithms.dpo import load_examples
from posttrain.cli import main
from posttrain.data import AGENT_STEPS, PREFERENCE, TRAJECTORY_PAIRS, detect_format, prepare_records, validate
from posttrain.errors import DataError
from posttrain.models.loading import load_tokenizer

CONTEXT = [{"role": "user", "content": "Sign up as Ada."},
           {"role": "assistant", "content": "open(/signup)"},
           {"role": "tool", "content": "Page: form [name] [Submit]"}]
STEPS = [
    {"prompt": CONTEXT, "corrected": "type(name, Ada)", "erroneous": "click(Submit)", "id": 7},
    {"prompt": CONTEXT[:1], "corrected": {"role": "assistant", "content": "open(/signup)"},
     "erroneous": [{"role": "assistant", "content": "open(/login)"}]},
    {"prompt": "Sign up as Bo.", "corrected": " open(/signup)", "erroneous": " save(bo.txt)"},
]


def test_step_pairs_become_preference_pairs():
    assert detect_format(STEPS[:2], "s.jsonl") == AGENT_STEPS
    rows, fmt = prepare_records(STEPS[:2], [PREFERENCE], "s.jsonl")
    assert fmt == PREFERENCE
    assert rows[0] == {"id": 7, "prompt": CONTEXT, "chosen": [{"role": "assistant", "content": "type(name, Ada)"}],
                       "rejected": [{"role": "assistant", "content": "click(Submit)"}]}
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "open(/signup)"}]
    assert rows[1]["rejected"] == [{"role": "assistant", "content": "open(/login)"}]
    standard, _ = prepare_records(STEPS[2:], [PREFERENCE], "s.jsonl")  # all strings stay strings
    assert standard == [{"prompt": "Sign up as Bo.", "chosen": " open(/signup)", "rejected": " save(bo.txt)"}]


def test_posttrain_dpo_trains_on_agent_steps(tiny_llama, tmp_path):
    steps = write_jsonl(tmp_path / "steps.jsonl", STEPS[:2] * 4)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", prepare_records(STEPS[:2] * 4, [PREFERENCE], "s")[0])
    tokenizer = load_tokenizer(tiny_llama)
    got = load_examples(tokenizer, steps, None, dpo_config(dataset=steps), "train")
    want = load_examples(tokenizer, pairs, None, dpo_config(dataset=pairs), "train")
    keys = ("prompt_ids", "chosen_ids", "rejected_ids")
    assert [[e[k] for k in keys] for e in got] == [[e[k] for k in keys] for e in want]
    out = tmp_path / "run"
    assert main(["dpo", f"model={tiny_llama}", f"dataset={steps}", f"output_dir={out}", "max_steps=3", "batch_size=4",
                 "learning_rate=1e-2", "logging_steps=1", "device=cpu", "lr_scheduler=constant"]) == 0
    records = read_metrics(out)
    assert records[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # the policy starts as the reference
    assert records[-1]["loss"] < records[0]["loss"]  # the corrected steps gain on the erroneous ones


@pytest.mark.parametrize("row,message", [
    ({"prompt": "x", "corrected": "a"}, "row 0, column 'erroneous': missing column 'erroneous'"),
    ({"prompt": "x", "corrected": "a", "erroneous": "a"}, "column 'erroneous': equals 'corrected'"),
    ({"prompt": "x", "corrected": "", "erroneous": "b"}, "column 'corrected': is empty"),
])
def test_bad_step_pairs(row, message):
    with pytest.raises(DataError, match=message):
        prepare_records([row], [PREFERENCE], "s.jsonl")


GOOD_STEP = {"observation": "Page: form", "action": "type(name, Ada)", "next_observation": "Field name = Ada"}


@pytest.mark.parametrize("chosen,message", [
    ([], "column 'chosen_trajectory': expected a non-empty list of steps"),
    ([{"observation": "o", "action": "a"}], "step 0: 'next_observation' must be a string, got missing"),
    ([GOOD_STEP, {**GOOD_STEP, "action": " "}], "step 1: 'action' is empty"),
    ("type(name, Ada)", "expected a non-empty list of steps .* got str"),
])
def test_bad_trajectory_pairs(chosen, message):
    rows = [{"chosen_trajectory": chosen, "rejected_trajectory": [GOOD_STEP]}]
    assert detect_format(rows, "t.jsonl") == TRAJECTORY_PAIRS
    with pytest.raises(DataError, match=message):
        validate(rows, [TRAJECTORY_PAIRS], "t.jsonl")
