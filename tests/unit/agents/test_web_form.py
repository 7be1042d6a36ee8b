"""The web-form environment: the gold trace replayed through reset/step, its events and milestone reward,
wrong actions as error observations, and the two ways an episode ends."""

import pytest

from posttrain.agents.environment import COUNTERS
from posttrain.agents.tool_calls import format_tool_call
from posttrain.agents.tools import ToolCall, tool_schema
from posttrain.agents.web_form import WebFormEnvironment
from posttrain.embedded import EMBEDDED_MODEL_DIR
from posttrain.errors import DataError
from posttrain.rewards.milestone import milestone_reward
from posttrain.tasks.web_form import make_row

WANT = {"url": "bank/pay", "field": "amount", "value": "250", "file": "b3.txt"}
ROW = make_row(WANT)


def _call(*calls):
    return format_tool_call([ToolCall(name, args) for name, args in calls], "hermes")


GOLD = [_call(("open", {"url": "bank/pay"})), _call(("type", {"field": "amount", "text": "250"}), ("submit", {})),
        _call(("save", {"file": "b3.txt"}))]


def _episode(replies, row=ROW):
    env = WebFormEnvironment()
    assert env.reset(row) == row["prompt"]
    turns = [env.step(reply) for reply in replies]
    return env, turns


def test_gold_trace_replayed_ends_on_save_with_the_full_milestone_reward():
    env, turns = _episode(GOLD)
    assert [t.done for t in turns] == [False, False, True]
    assert [[m["content"] for m in t.messages] for t in turns] == [["textbox amount, button submit"], ["ok", "sent"],
                                                                   ["saved"]]
    assert [[e["type"] for e in t.events] for t in turns] == [["navigation"], ["fill", "click"], ["file", "goal"]]
    assert turns[1].info == {**dict.fromkeys(COUNTERS, 0), "tool_calls": 2}
    assert turns[-1].info["success"] is True and all(t.reward == 0.0 for t in turns)
    events = [e for t in turns for e in t.events]
    assert events == env.events
    score = milestone_reward()(None, [None], events=[events], expected=[ROW["expected"]])
    assert score == [pytest.approx(1.0)]


def test_wrong_actions_are_error_observations_and_the_episode_goes_on():
    env, turns = _episode([_call(("open", {"url": "bank"})), _call(("click", {"name": "pay"})),
                           _call(("open", {"url": "bank/pay"}), ("type", {"field": "sum", "text": "250"})),
                           _call(("type", {"field": "amount", "text": "205"}), ("submit", {})),
                           _call(("save", {"file": "b3.txt"}))])
    assert turns[0].messages[0]["content"].startswith("error: open raised ValueError: no page 'bank'; pages: ")
    assert turns[0].info["tool_errors"] == 1 and turns[0].events == []
    assert turns[1].messages[0]["content"] == "error: click raised ValueError: no buttons on this page; open(url) a form first"
    assert turns[2].info["tool_errors"] == 1 and turns[2].info["tool_calls"] == 2
    assert [t.done for t in turns] == [False, False, False, False, True]
    assert turns[-1].info["success"] is False  # 205, not 250
    events = [e for t in turns for e in t.events]
    assert milestone_reward()(None, [None], events=[events], expected=[ROW["expected"]]) == [pytest.approx(0.8)]


def test_a_plain_reply_ends_the_episode_unfinished():
    env, turns = _episode(GOLD[:1] + ["done"])
    assert turns[-1].done and turns[-1].info == {"success": False} and turns[-1].messages == []


def test_episodes_are_independent_and_need_the_want_column():
    a = WebFormEnvironment()
    a.reset(ROW)
    other = make_row({"url": "vote/poll", "field": "choice", "value": "tea", "file": "v1.txt"})
    b, _ = _episode([_call(("open", {"url": "vote/poll"}))], other)
    assert a.events == [] and a.browser.url is None and b.browser.url == "vote/poll"
    assert [tool_schema(t) for t in a.tools] == ROW["tools"]
    with pytest.raises(DataError, match="want"):
        WebFormEnvironment().reset({"prompt": "x"})


@pytest.mark.parametrize("saves", [True, False])
def test_sft_trace_and_rollout_render_the_same_tokens(saves):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR)
    row, env = make_row(WANT, saves), WebFormEnvironment()
    messages = env.reset(row)
    for reply in GOLD if saves else GOLD[:2] + ["Sent."]:  # the careless teacher stops after submitting
        turn = env.step(reply)
        messages += [{"role": "assistant", "content": reply}] + turn.messages
    assert turn.done and turn.info["success"] is saves
    rollout = tokenizer.apply_chat_template(messages, tools=[tool_schema(t) for t in env.tools], tokenize=False)
    assert rollout == tokenizer.apply_chat_template(row["prompt"] + row["completion"], tools=row["tools"], tokenize=False)
