"""The prompt curriculum's decisions on hand-made pass records: the window, min_seen, the three filters,
the pause when too few prompts are left, the difficulty order and the checkpoint round trip."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from posttrain.errors import DataError
from posttrain.online.curriculum import PromptCurriculum


def curriculum(rows=None, **values) -> PromptCurriculum:
    cfg = dict(prompt_filter="both", filter_window=3, filter_min_seen=2, pass_threshold=0.5, difficulty_column=None,
               seed=0, dataset="prompts.jsonl")
    return PromptCurriculum(rows or [{"prompt": str(i)} for i in range(6)], SimpleNamespace(**{**cfg, **values}))


def test_pass_rate_is_the_share_at_or_above_the_threshold_and_masked_rewards_are_left_out():
    c = curriculum()
    assert c.record(0, [1.0, 0.5, 0.49, None]) == pytest.approx(2 / 3)
    assert c.record(1, [None, None]) is None and 1 not in c.history


def test_solved_and_unsolved_prompts_are_filtered_after_min_seen_groups_over_the_window():
    c = curriculum()
    c.record(0, [1.0, 1.0])
    assert 0 not in c.filtered  # seen once, min_seen = 2
    c.record(0, [1.0, 1.0])
    assert 0 in c.filtered  # rates [1, 1]: always solved
    c.record(1, [0.0, 0.0]), c.record(1, [0.0, 0.0])
    assert 1 in c.filtered  # never solved
    c.record(2, [1.0, 0.0]), c.record(2, [1.0, 1.0]), c.record(2, [1.0, 1.0])
    assert 2 not in c.filtered and c.history[2] == [0.5, 1.0, 1.0]  # mean 5/6 over the window
    c.record(2, [1.0, 1.0])
    assert c.history[2] == [1.0, 1.0, 1.0] and 2 in c.filtered  # the 0.5 fell out of the window of 3


@pytest.mark.parametrize("mode, filtered", [("solved", {0}), ("unsolved", {1}), ("both", {0, 1}), ("off", set())])
def test_each_filter_drops_only_its_kind(mode, filtered):
    c = curriculum(prompt_filter=mode, filter_min_seen=1)
    c.record(0, [1.0]), c.record(1, [0.0]), c.record(2, [1.0, 0.0])
    assert c.filtered == filtered


def test_the_filter_pauses_when_fewer_prompts_than_a_round_needs_are_left():
    c = curriculum(filter_min_seen=1)
    for i in range(4):
        c.record(i, [1.0])
    assert not c.keeps(0, needed=2) and c.keeps(5, needed=2)  # 2 left: enough for a round of 2
    assert c.keeps(0, needed=3)  # a round of 3 could not be filled: everything is sampled


def test_difficulty_order_is_easy_first_with_ties_in_the_seeded_order():
    rows = [{"prompt": str(i), "level": level} for i, level in enumerate([2, 1, 2, 1, 3, 1])]
    seeded = random.Random(0 + 5).sample(range(6), 6)
    order = curriculum(rows, difficulty_column="level", seed=0).order(epoch=5)
    assert [rows[i]["level"] for i in order] == [1, 1, 1, 2, 2, 3]
    assert [i for i in order if rows[i]["level"] == 1] == [i for i in seeded if rows[i]["level"] == 1]
    assert curriculum(rows, seed=0).order(epoch=5) == seeded  # without a column: the seeded order


def test_a_row_without_a_difficulty_number_is_a_data_error():
    with pytest.raises(DataError, match="row 1 has no number in column 'level'"):
        curriculum([{"prompt": "a", "level": 1}, {"prompt": "b"}], difficulty_column="level")


def test_state_round_trips():
    c = curriculum(filter_min_seen=1)
    c.record(3, [1.0]), c.record(4, [0.0, 1.0])
    restored = curriculum(filter_min_seen=1)
    restored.load_state_dict(c.state_dict())
    assert restored.history == c.history and restored.filtered == c.filtered == {3}
