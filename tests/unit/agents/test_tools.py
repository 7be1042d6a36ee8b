"""Tools: transformers' schemas reach the embedded template, and every failing call is an observation."""

import asyncio
import os
import time

import pytest

from posttrain.agents.tools import ToolBox, ToolCall, ToolResult, python_tool, resolve, tool_schema
from posttrain.errors import ConfigError

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def calculate(expression: str, digits: int = 0) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: The expression, e.g. 12*(3+4).
        digits: Decimal places of the result.
    """
    return str(round(eval(expression, {"__builtins__": {}}), digits or None))  # test-only: fixed inputs


def divide(a: float, b: float) -> float:
    """Divide a by b.

    Args:
        a: The dividend.
        b: The divisor.
    """
    return a / b


def sleepy() -> str:
    """Never answers in time."""
    time.sleep(3)
    return "late"


async def shout(text: str) -> str:
    """Upper-case a text, asynchronously.

    Args:
        text: The text.
    """
    await asyncio.sleep(0.01)
    return text.upper()


class Counter:
    def __init__(self):
        self.count = 0

    def bump(self, by: int) -> int:
        """Add to the counter.

        Args:
            by: How much to add.
        """
        self.count += by
        return self.count


def test_schema_is_transformers_own_and_reaches_the_embedded_template():
    from transformers import AutoTokenizer
    from transformers.utils import get_json_schema

    from posttrain.embedded import EMBEDDED_MODEL_DIR

    counter = Counter()
    for fn in (calculate, divide, shout, counter.bump):
        assert tool_schema(fn) == get_json_schema(fn)
    schema = tool_schema(calculate)["function"]
    assert schema["name"] == "calculate" and schema["parameters"]["required"] == ["expression"]
    assert schema["parameters"]["properties"]["digits"] == {"type": "integer", "description": "Decimal places of the result."}
    assert list(tool_schema(counter.bump)["function"]["parameters"]["properties"]) == ["by"]  # no self

    tok = AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR)
    text = tok.apply_chat_template([{"role": "user", "content": "12*13?"}], tools=[tool_schema(calculate), tool_schema(counter.bump)],
                                   tokenize=False, add_generation_prompt=True)
    assert text == "<|bos|><|system|>\nTools: calculate(expression, digits) bump(by)<|end|>\n<|user|>\n12*13?<|end|>\n<|assistant|>\n"
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tools=ToolBox([calculate]).schemas, tokenize=False) == \
        "<|bos|><|system|>\nTools: calculate(expression, digits)<|end|>\n<|user|>\nx<|end|>"


def test_a_tool_without_hints_or_docstring_is_a_config_error():
    def untyped(x):
        """Something.

        Args:
            x: a thing
        """

    def undocumented(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match="tool untyped: .*type hint"):
        tool_schema(untyped)
    with pytest.raises(ConfigError, match="tool undocumented: .*docstring"):
        ToolBox([undocumented])


def test_every_failing_call_is_an_error_observation():
    box = ToolBox([calculate, divide, sleepy, shout], timeout=0.2)
    assert box.names == ["calculate", "divide", "sleepy", "shout"]
    cases = [
        (ToolCall("calculate", {"expression": "12*13"}), ToolResult("156", None)),
        (ToolCall("divide", {"a": 7, "b": 2}), ToolResult("3.5", None)),  # a non-string result is JSON text
        (ToolCall("square", {"x": 2}), ToolResult("error: unknown tool 'square'; tools: calculate, divide, sleepy, shout", "unknown_tool")),
        (ToolCall("calculate", {}), ToolResult("error: bad arguments for calculate: missing a required argument: 'expression'", "bad_arguments")),
        (ToolCall("calculate", {"expression": "1", "base": 2}),
         ToolResult("error: bad arguments for calculate: got an unexpected keyword argument 'base'", "bad_arguments")),
        (ToolCall("calculate", {"expression": 12}), ToolResult("error: bad arguments for calculate: 'expression' must be string, got 12", "bad_arguments")),
        (ToolCall("calculate", {"expression": "1", "digits": True}),
         ToolResult("error: bad arguments for calculate: 'digits' must be integer, got true", "bad_arguments")),
        (ToolCall("divide", {"a": 1, "b": 0}), ToolResult("error: divide raised ZeroDivisionError: division by zero", "raised")),
        (ToolCall("shout", {"text": "ok"}), ToolResult("OK", None)),
    ]
    for call, expected in cases:
        assert box.call(call) == expected, call
    started = time.monotonic()
    assert box.call(ToolCall("sleepy", {})) == ToolResult("error: sleepy timed out after 0.2 s", "timeout")
    assert time.monotonic() - started < 1.0  # abandoned, not awaited


def test_async_tools_and_bound_methods_work_inside_a_running_event_loop():
    counter = Counter()
    box = ToolBox([counter.bump, shout], timeout=2.0)

    async def episode():  # a rollout that steps its environments in asyncio
        return [box.call(ToolCall("bump", {"by": 2})), box.call(ToolCall("bump", {"by": 3})), box.call(ToolCall("shout", {"text": "hi"}))]

    assert [r.content for r in asyncio.run(episode())] == ["2", "5", "HI"]
    assert counter.count == 5  # the state lives on the bound method's object

    async def fails():
        raise KeyError("k")

    async def inside():
        return resolve(fails())

    with pytest.raises(KeyError):
        asyncio.run(inside())


def test_python_tool_runs_in_the_sandbox_and_a_runaway_loop_times_out():
    run_python = python_tool(timeout=0.5)
    assert tool_schema(run_python)["function"]["parameters"]["properties"]["code"]["type"] == "string"
    box = ToolBox([run_python], timeout=5.0)
    assert box.call(ToolCall("run_python", {"code": "print(sum(range(101)))"})) == ToolResult("5050", None)
    assert box.call(ToolCall("run_python", {"code": "1/0"})) == \
        ToolResult("error: run_python raised RuntimeError: ZeroDivisionError: division by zero", "raised")
    started = time.monotonic()
    result = box.call(ToolCall("run_python", {"code": "while True:\n    pass"}))
    assert result == ToolResult("error: run_python timed out after 0.5 s (the program was killed)", "timeout")
    assert time.monotonic() - started < 3.0
