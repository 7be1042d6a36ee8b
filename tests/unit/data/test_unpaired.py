"""KTO's unpaired data: the mismatched (KL) pairing is a seeded derangement that avoids the same prompt, the KL
sequence is cut to max_length, and the collator and stack_sides lay out both sides."""

import pytest
import torch

from posttrain.data.unpaired import assign_kl_completions, collate_unpaired, stack_sides
from posttrain.errors import DataError


def _examples(prompts: list[list[int]]) -> list[dict]:
    return [{"prompt_ids": p, "completion_ids": [100 + i, 200 + i], "completion_mask": [1, 1], "label": i % 2 == 0, "row": i}
            for i, p in enumerate(prompts)]


def test_kl_pairing_is_a_seeded_derangement_avoiding_same_prompt():
    prompts = [[k // 2 + 1] for k in range(20)]  # pairs -> unpaired: each prompt twice, adjacent
    a = assign_kl_completions(_examples(prompts), seed=3)
    partners = [ex["kl_row"] for ex in a]
    assert sorted(partners) == list(range(20))  # every completion serves exactly once as a y'
    assert all(p != i for i, p in enumerate(partners))
    assert all(a[i]["prompt_ids"] != a[p]["prompt_ids"] for i, p in enumerate(partners))
    assert all(ex["kl_completion_ids"] == a[ex["kl_row"]]["completion_ids"] for ex in a)
    assert [ex["kl_row"] for ex in assign_kl_completions(_examples(prompts), seed=3)] == partners
    assert [ex["kl_row"] for ex in assign_kl_completions(_examples(prompts), seed=4)] != partners
    with pytest.raises(DataError, match="at least 2 examples"):
        assign_kl_completions(_examples([[1]]), seed=0)


def test_kl_sequence_is_cut_to_max_length():
    examples = assign_kl_completions(_examples([[1, 2, 3], [4]]), seed=0, max_length=4)
    assert examples[0]["kl_completion_ids"] == [101]  # 3 prompt tokens leave room for 1
    assert examples[1]["kl_completion_ids"] == [100, 200]


def test_collate_and_stack_sides():
    examples = _examples([[1, 2, 3], [4]])
    examples[0]["completion_mask"] = [1, 0]
    assign_kl_completions(examples, seed=0)
    batch = collate_unpaired(examples, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 100, 200], [4, 101, 201, 0, 0]]
    assert batch["target_mask"].int().tolist() == [[0, 0, 0, 1, 0], [0, 1, 1, 0, 0]]
    assert batch["kl_input_ids"].tolist() == [[1, 2, 3, 101, 201], [4, 100, 200, 0, 0]]
    assert batch["kl_target_mask"].int().tolist() == [[0, 0, 0, 1, 1], [0, 1, 0, 0, 0]]  # y' keeps its own mask
    assert batch["label"].tolist() == [True, False] and batch["num_examples"] == 2 and batch["num_tokens"] == 16
    ids, attention, target = stack_sides(batch, pad_token_id=0)
    assert ids.shape == (4, 5) and torch.equal(ids[2:], batch["kl_input_ids"]) and attention.sum() == 16
    assert torch.equal(target[:2], batch["target_mask"])
    assert "kl_input_ids" not in collate_unpaired(examples, 0, with_kl=False)
