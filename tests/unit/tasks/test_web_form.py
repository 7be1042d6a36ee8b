"""task:web_form: the browser's state machine and its milestone events, the gold traces, the scorers."""

import pytest

from posttrain.embedded import EMBEDDED_MODEL_DIR
from posttrain.rewards.milestone import MilestoneReward
from posttrain.tasks import get_task
from posttrain.tasks.web_form import FORMS, Browser, expected_of, goal, gold_trace

WANT = {"url": "hotel/book", "field": "date", "value": "0408", "file": "h7.txt"}
SEED = MilestoneReward.seed_example()  # nav 0.1, ui 0.2, form 0.2, file 0.3, goal 0.2


def test_gold_episode_events_and_full_milestone_reward():
    b = Browser(WANT)
    assert b.page().startswith("blank page")
    assert b.open("hotel/book") == "textbox date, button submit"
    assert b.type("date", "0408") == "ok"
    assert b.submit() == "sent"
    assert b.save("h7.txt") == "saved"
    assert b.events == [{"type": "navigation", "url": "hotel/book"}, {"type": "fill", "field": "date", "value": "0408"},
                        {"type": "click", "role": "button", "name": "submit"},
                        {"type": "file", "event": "created", "path": "h7.txt"}, {"type": "goal", "verified": True}]
    assert SEED.score(b.events, expected_of(WANT)) == pytest.approx(1.0)


@pytest.mark.parametrize("actions, score, reached", [
    ([("open", "hotel/book")], 0.1, False),  # navigation only
    ([("open", "bank/pay")], 0.0, False),  # the wrong page: no navigation milestone (expected url)
    ([("open", "hotel/book"), ("type", "date", "0408")], 0.3, False),  # + form
    ([("open", "hotel/book"), ("type", "date", "0408"), ("submit",)], 0.5, False),  # + ui
    ([("open", "hotel/book"), ("type", "date", "0409"), ("submit",), ("save", "h7.txt")], 0.8, False),  # wrong value
    ([("open", "hotel/book"), ("type", "date", "0408"), ("click", "submit"), ("save", "x.txt")], 0.8, False),  # wrong file
    ([("open", "hotel/book"), ("type", "date", "0408"), ("click", "submit"), ("save", "h7.txt")], 1.0, True),
    ([("open", "hotel/book"), ("submit",), ("save", "h7.txt")], 0.6, False),  # nothing typed: no form, no goal
])
def test_partial_episodes_score_their_milestones(actions, score, reached):
    b = Browser(WANT)
    for name, *args in actions:
        getattr(b, name)(*args)
    assert SEED.score(b.events, expected_of(WANT)) == pytest.approx(score)
    assert b.goal_reached() is reached


@pytest.mark.parametrize("actions, message", [
    ([("open", "nope")], "no page 'nope'; pages: shop/signup"),
    ([("type", "date", "1")], "no form on this page"),
    ([("open", "hotel/book"), ("type", "name", "x")], "no field 'name'; this form has: date"),
    ([("submit",)], "no form to submit"),
    ([("open", "hotel/book"), ("save", "a.txt")], "nothing to save; submit"),
    ([("open", "hotel/book"), ("click", "cancel")], "no button 'cancel'"),
    ([("open", "hotel/book"), ("submit",), ("save", "../etc/x")], "plain file name"),
    ([("open", "hotel/book"), ("submit",), ("submit",)], "no form to submit"),
])
def test_wrong_actions_raise_a_one_line_reason(actions, message):
    b = Browser(WANT)
    *before, (name, *args) = actions
    for n, *a in before:
        getattr(b, n)(*a)
    events = list(b.events)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        getattr(b, name)(*args)
    assert b.events == events  # a wrong action leaves no event


def test_rows_expected_and_the_careless_teachers_traces():
    rows = get_task("web_form").rows("train", 300)
    assert {r["want"]["url"] for r in rows} == set(FORMS)
    saved = [r["completion"][-1]["role"] == "tool" for r in rows]
    assert 0.25 < sum(saved) / len(rows) < 0.42  # DEMO_SAVE_RATE = 1/3: two demonstrations in three skip the save
    for row, saves in zip(rows[:50], saved):
        want = row["want"]
        assert row["prompt"][0]["content"] == f"{want['url']}: {want['field']} {want['value']}, submit, save {want['file']}"
        assert row["expected"] == {"url": want["url"], "click": {"role": "button", "name": "submit"},
                                   "fields": [want["field"]], "file_extension": ".txt"}
        names = [[c["function"]["name"] for c in m.get("tool_calls", [])] for m in row["completion"]
                 if m["role"] == "assistant"]
        assert names == [["open"], ["type", "submit"], ["save"] if saves else []]
        results = [m["content"] for m in row["completion"] if m["role"] == "tool"]
        assert results == [f"textbox {want['field']}, button submit", "ok", "sent", *(["saved"] if saves else [])]
        assert saves or row["completion"][-1] == {"role": "assistant", "content": "Sent."}
        assert [t["function"]["name"] for t in row["tools"]] == ["open", "click", "type", "submit", "save"]
        _, events = gold_trace(want, saves)
        # nav 0.1 + ui 0.2 + form 0.2; the save adds file 0.3 and goal 0.2
        assert SEED.score(events, row["expected"]) == pytest.approx(1.0 if saves else 0.5)


def test_whole_gold_trace_fits_the_embedded_model():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR)
    rows = get_task("web_form").rows("train", 200) + get_task("web_form").rows("test", 100)
    lengths = [len(tokenizer.apply_chat_template(r["prompt"] + r["completion"], tools=r["tools"], tokenize=True,
                                                 return_dict=True)["input_ids"]) for r in rows]
    assert max(lengths) <= 420  # of 512 positions (measured: max 418, mean 407): room for a wrong action or two
    text = tokenizer.apply_chat_template(rows[0]["prompt"], tools=rows[0]["tools"], tokenize=False)
    assert text.startswith("<|bos|><|system|>\nTools: open(url) click(name) type(field, text) submit() save(file)<|end|>")


def test_goal_scorer_from_events_or_replayed_calls():
    completion, events = gold_trace(WANT)
    wrong = [dict(m) for m in completion]
    wrong[2] = {**wrong[2], "tool_calls": [{"type": "function", "function": {"name": "type", "arguments": {
        "field": "date", "text": "9999"}}}, wrong[2]["tool_calls"][1]]}
    assert goal(None, [completion, wrong, "plain text"], want=[WANT] * 3) == [1.0, 0.0, 0.0]
    assert goal(None, [None, None], events=[events, events[:-1]]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="want"):
        goal(None, [completion])

