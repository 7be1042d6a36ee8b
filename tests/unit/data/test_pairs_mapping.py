"""load_pairs tokenizes through Dataset.map (data/mapping.py): the same examples as tokenizing each pair
by hand, in parallel, and errors still name the file's row after invalid pairs were dropped."""

from __future__ import annotations

import datasets
import pytest

from posttrain.data.converters import extract_prompt
from posttrain.data.pairs import load_pairs
from posttrain.data.tokenize import tokenize_preference
from posttrain.errors import DataError
from posttrain.models.loading import load_tokenizer


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")


def _rows() -> list[dict]:
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
             "chosen": [{"role": "assistant", "content": f"<answer>{2 * i}</answer>"}],
             "rejected": [{"role": "assistant", "content": f"<answer>{2 * i + 1}</answer>"}],
             "label": 0.5 if i % 5 == 0 else 1.0} for i in range(12)]
    rows[3] = {"prompt": "Say hi.", "chosen": " hi", "rejected": " hi", "margin": 2.0}  # identical sides: dropped
    return rows


def test_mapped_pairs_equal_each_pair_tokenized_by_hand_with_labels_margins_and_file_rows():
    tokenizer = load_tokenizer("embedded")
    examples, dropped = load_pairs(tokenizer, _rows(), "p.jsonl", max_length=128, truncation=False, invalid_pairs="drop", num_proc=2)
    assert dict(dropped) == {"identical sides": 1}
    expected_rows = [i for i in range(12) if i != 3]
    assert [ex["row"] for ex in examples] == expected_rows
    for ex, i in zip(examples, expected_rows, strict=True):
        by_hand = tokenize_preference(tokenizer, extract_prompt(_rows()[i]), max_length=128, truncation=False, source="p.jsonl", row_index=i)
        assert {k: ex[k] for k in by_hand} == by_hand, i
        assert (ex["label"], ex["margin"]) == (0.5 if i % 5 == 0 else 1.0, 0.0)


def test_a_pair_too_long_names_its_row_in_the_file_after_drops():
    rows = _rows()
    rows[7]["chosen"] = [{"role": "assistant", "content": "word " * 300}]
    with pytest.raises(DataError, match=r"^p.jsonl, row 7, column 'chosen'"):
        load_pairs(load_tokenizer("embedded"), rows, "p.jsonl", max_length=128, truncation=False, invalid_pairs="drop", num_proc=2)
