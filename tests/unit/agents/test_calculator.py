"""The calculator environment: the gold trace replayed through reset/step, its rewards, and every tool failure."""

import pytest

from posttrain.agents.adapters import as_environment_factory
from posttrain.agents.calculator import CalculatorEnvironment
from posttrain.agents.environment import COUNTERS, Environment
from posttrain.agents.tool_calls import format_tool_call
from posttrain.agents.tools import ToolCall, tool_schema
from posttrain.embedded import EMBEDDED_MODEL_DIR
from posttrain.errors import DataError
from posttrain.tasks.calculator import make_row

ROW = make_row("347 * 28 - 91")
CALL = format_tool_call(ToolCall("calculate", {"expression": "347 * 28 - 91"}), "hermes")


def _env(row=ROW):
    env = CalculatorEnvironment()
    assert env.reset(row) == row["prompt"]
    return env


def test_gold_trace_replayed():
    env = _env()
    assert isinstance(env, Environment)
    turn = env.step(CALL)
    assert turn.messages == [{"role": "tool", "name": "calculate", "content": "9625"}]
    assert (turn.done, turn.reward, turn.info) == (False, 0.0, {**dict.fromkeys(COUNTERS, 0), "tool_calls": 1})
    last = env.step("<answer>9625</answer>")
    assert (last.done, last.messages, last.info) == (True, [], {"success": True})
    assert last.reward == 1.0


@pytest.mark.parametrize("replies, reward, success", [
    ([CALL, "<answer>9624</answer>"], 0.0, False),  # wrong answer
    (["<answer>9625</answer>"], 1.0, True),  # right without the tool (the recipe's tool_use reward says otherwise)
    (["9625"], 0.0, False),  # no <answer> tags
    (["The answer is <answer>9,625</answer>."], 1.0, True),
    (['<tool_call>\n{"name": "calculate", "arguments": {"expression": "347 * 28 - 91"\n</tool_call>', CALL,
      "<answer>9625</answer>"], 1.0, True),  # a malformed call first, then right
])
def test_final_rewards(replies, reward, success):
    env = _env()
    for reply in replies[:-1]:
        assert not env.step(reply).done
    last = env.step(replies[-1])
    assert last.done and last.reward == pytest.approx(reward) and last.info["success"] is success


@pytest.mark.parametrize("reply, counts, content", [
    ('<tool_call>\n{"name": "calculate", "arguments": {"expression": "2 ** 99"}}\n</tool_call>',
     {"tool_calls": 1, "tool_errors": 1}, "error: calculate raised ValueError: unsupported element '2 ** 99'"),
    ('<tool_call>\n{"name": "calc", "arguments": {"expression": "1"}}\n</tool_call>',
     {"tool_calls": 1, "tool_errors": 1, "unknown_tools": 1}, "error: unknown tool 'calc'; tools: calculate"),
    ('<tool_call>\n{"name": "calculate", "arguments": {"expr": "1"}}\n</tool_call>',
     {"tool_calls": 1, "tool_errors": 1}, "error: bad arguments for calculate"),
    ('<tool_call>\n{"name": "calculate", "arguments": {"expression": "1 +"\n</tool_call>', {"parse_errors": 1}, "error: "),
])
def test_failures_are_observations_never_crashes(reply, counts, content):
    env = _env()
    turn = env.step(reply)
    assert not turn.done and len(turn.messages) == 1 and turn.messages[0]["role"] == "tool"
    assert turn.messages[0]["content"].startswith(content)
    assert turn.info == {**dict.fromkeys(COUNTERS, 0), **counts}
    assert env.step("<answer>9625</answer>").reward == 1.0  # the episode goes on


def test_episodes_are_independent_and_the_tool_schema_is_the_rows():
    a, b = _env(), _env(make_row("12 * 12"))
    a.step('<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>')
    b.step(format_tool_call(ToolCall("calculate", {"expression": "12 * 12"}), "hermes"))
    assert b.step("<answer>144</answer>").reward == 1.0
    assert a.step("<answer>9625</answer>").reward == 1.0
    assert [tool_schema(t) for t in a.tools] == ROW["tools"]
    assert isinstance(as_environment_factory(CalculatorEnvironment)(), CalculatorEnvironment)
    with pytest.raises(DataError, match="answer"):
        CalculatorEnvironment().reset({"prompt": "What is 1 * 2?"})


def test_sft_trace_and_rollout_render_the_same_tokens():
    """SFT trains on the rows' structured tool calls; the rollout appends the model's text and the
    environment's tool messages: the chat template must make the same text of both."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR)
    env = _env()
    messages = list(ROW["prompt"]) + [{"role": "assistant", "content": CALL}]
    messages += env.step(CALL).messages + [{"role": "assistant", "content": "<answer>9625</answer>"}]
    rollout = tokenizer.apply_chat_template(messages, tools=[tool_schema(t) for t in env.tools], tokenize=False)
    assert rollout == tokenizer.apply_chat_template(ROW["prompt"] + ROW["completion"], tools=ROW["tools"], tokenize=False)
