"""CPO's triplets: a ranking row becomes one pair, best vs worst, the middle dropped; `ranking_pairs` picks
that conversion or every C(K,2) pair, and the DPO stage reads it."""

from __future__ import annotations

import pytest

from conftest import dpo_config, write_jsonl
from posttrain.algorithms.dpo import PRESETS, load_examples
from posttrain.data.converters import prepare_records, rankings_to_best_worst
from posttrain.errors import ConfigError
from posttrain.models.loading import load_tokenizer

# completions[i] has rank ranking[i] (0 = best): "great" 0, "fine" 1, "awful" 2
TRIPLET = {"prompt": "Review:", "completions": [" fine", " awful", " great"], "ranking": [1, 2, 0], "id": 7}


def test_best_vs_worst_drops_the_middle():
    four = {"prompt": "Q", "completions": ["a", "b", "c", "d"], "ranking": [2, 0, 3, 1]}  # b best, c worst
    assert rankings_to_best_worst([TRIPLET, four]) == [
        {"prompt": "Review:", "chosen": " great", "rejected": " awful", "id": 7, "group": 0},
        {"prompt": "Q", "chosen": "b", "rejected": "c", "group": 1},
    ]


def test_prepare_records_converts_rankings_by_the_rule_asked():
    every, fmt = prepare_records([TRIPLET], ["preference"], "t.jsonl")
    assert fmt == "preference" and [(r["chosen"], r["rejected"]) for r in every] == [
        (" great", " fine"), (" great", " awful"), (" fine", " awful")]  # C(3,2) = 3
    triplet, _ = prepare_records([TRIPLET], ["preference"], "t.jsonl", ranking_pairs="best_worst")
    assert [(r["chosen"], r["rejected"]) for r in triplet] == [(" great", " awful")]


def test_dpo_reads_ranking_pairs_and_the_cpo_preset_takes_triplets(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "triplets.jsonl", [TRIPLET, {**TRIPLET, "ranking": [0, 1, 2]}])
    tokenizer = load_tokenizer(tiny_llama)
    assert PRESETS["cpo"]["ranking_pairs"] == "best_worst"
    triplets = load_examples(tokenizer, data, None, dpo_config(dataset=data, **PRESETS["cpo"]), "train")
    every = load_examples(tokenizer, data, None, dpo_config(dataset=data), "train")
    assert len(triplets) == 2 and len(every) == 6
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True).strip()  # noqa: E731
    assert [(decode(e["chosen_ids"]), decode(e["rejected_ids"])) for e in triplets] == [("great", "awful"), ("fine", "great")]
    with pytest.raises(ConfigError, match="ranking_pairs"):
        dpo_config(dataset=data, ranking_pairs="best")
