"""posttrain.data.values: the text of a completion cell (`completion_text`) and a sampled text as a
cell (`completion_value`), the one pair every reward, scorer, judge and sampling stage uses."""

from __future__ import annotations

import pytest

from posttrain.data.values import completion_text, completion_value


@pytest.mark.parametrize("completion, text", [
    ("plain text", "plain text"),
    ("", ""),
    (None, ""),
    ({"role": "assistant", "content": "one message"}, "one message"),
    ({"role": "assistant", "content": None}, ""),
    ([{"role": "assistant", "content": "only turn"}], "only turn"),
    # multi-turn: the last assistant turn is the answer; user turns and tool results are not
    ([{"role": "assistant", "content": "first"}, {"role": "user", "content": "sure?"},
      {"role": "assistant", "content": "second"}], "second"),
    ([{"role": "assistant", "content": "call"}, {"role": "tool", "content": "42"}], "call"),
    ([{"role": "user", "content": "no assistant"}, {"role": "user", "content": "at all"}], "at all"),
    ([{"content": "no role counts as assistant"}, {"role": "user", "content": "u"}], "no role counts as assistant"),
    ([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]}], "ab"),
    (["x", "y"], "xy"),
    ([], ""),
])
def test_completion_text(completion, text):
    assert completion_text(completion) == text


def test_completion_value_round_trips_through_completion_text():
    assert completion_value("hi", conversational=False) == "hi"
    assert completion_value("hi", conversational=True) == [{"role": "assistant", "content": "hi"}]
    for conversational in (False, True):
        assert completion_text(completion_value("answer 7", conversational)) == "answer 7"
