"""Python callables as tools: their JSON schemas, and calls that never crash the rollout.

The tools convention is TRL's and transformers' `tools=`: a list of typed Python functions with
Google-style docstrings; `tool_schema` is transformers' `get_json_schema` on each (the schema the chat
template receives). A model's call of a tool goes through `ToolBox.call`, which turns everything that
can go wrong (an unknown name, wrong or missing arguments, a tool that raises, a tool that hangs) into
a one-line observation the model reads next turn, tagged with an error kind the metrics count
(issue 16, point 1: "an error observation the model sees, as real agents do, never a crash").
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import threading
from dataclasses import dataclass, field
from typing import Callable

from posttrain.errors import ConfigError

ERRORS = ("unknown_tool", "bad_arguments", "raised", "timeout")  # ToolResult.error, when not None
_JSON_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
               "array": (list,), "object": (dict,), "null": (type(None),)}


_SCHEMAS: dict = {}  # function -> its schema: every episode's tools are the same functions (bound to a fresh object)


def tool_schema(fn: Callable) -> dict:
    """`{"type": "function", "function": {"name", "description", "parameters"}}`, as transformers makes it
    (parsed once per function, a copy each call)."""
    from transformers.utils import get_json_schema
    from transformers.utils.chat_template_utils import DocstringParsingException, TypeHintParsingException

    name = getattr(fn, "__name__", repr(fn))
    key = getattr(fn, "__func__", fn)  # a bound method: its function (the schema leaves `self` out either way)
    key = key if getattr(type(key), "__hash__", None) else id(key)
    try:
        if key not in _SCHEMAS:
            _SCHEMAS[key] = get_json_schema(fn)
        return copy.deepcopy(_SCHEMAS[key])
    except (DocstringParsingException, TypeHintParsingException) as exc:
        raise ConfigError(f"tool {name}: {exc}; a tool needs a type hint on every argument and a Google-style "
                          f"docstring with an 'Args:' line per argument (as for transformers' tools=)") from None


@dataclass
class ToolCall:
    name: str
    arguments: dict = field(default_factory=dict)


@dataclass
class ToolResult:
    content: str  # what the model reads in the tool message
    error: str | None = None  # None or one of ERRORS


class ToolBox:
    """The tools of one episode: schemas for the template, and `call` that never raises."""

    def __init__(self, tools: list[Callable], timeout: float = 10.0):
        self.tools = {}
        for fn in tools:
            if not callable(fn):
                raise ConfigError(f"tools: {fn!r} is not callable; give Python functions (or bound methods)")
            self.tools[fn.__name__] = fn
        self.schemas = [tool_schema(fn) for fn in self.tools.values()]
        self.names = list(self.tools)
        self.timeout = timeout

    def call(self, call: ToolCall) -> ToolResult:
        fn = self.tools.get(call.name)
        if fn is None:
            return ToolResult(f"error: unknown tool {call.name!r}; tools: {', '.join(self.names) or 'none'}",
                              "unknown_tool")
        problem = self._argument_problem(call)
        if problem:
            return ToolResult(f"error: bad arguments for {call.name}: {problem}", "bad_arguments")
        outcome = _run_with_timeout(fn, call.arguments, self.timeout)
        if outcome is None or isinstance(outcome[1], TimeoutError):  # hung, or it reported its own time limit
            limit = f"{self.timeout:g} s" if outcome is None else _one_line(outcome[1], "its time limit")
            return ToolResult(f"error: {call.name} timed out after {limit}", "timeout")
        value, exc = outcome
        if exc is not None:
            return ToolResult(f"error: {call.name} raised {type(exc).__name__}: {_one_line(exc)}", "raised")
        return ToolResult(_as_text(value))

    def _argument_problem(self, call: ToolCall) -> str | None:
        """Why the arguments do not fit the tool's signature and schema types, or None."""
        fn = self.tools[call.name]
        try:
            inspect.signature(fn).bind(**call.arguments)
        except TypeError as exc:
            return str(exc)
        properties = self.schemas[self.names.index(call.name)]["function"]["parameters"].get("properties", {})
        for name, value in call.arguments.items():
            expected = properties.get(name, {}).get("type")
            kinds = [expected] if isinstance(expected, str) else list(expected or [])
            allowed = tuple(t for kind in kinds for t in _JSON_TYPES.get(kind, (object,)))
            if allowed and object not in allowed and (not isinstance(value, allowed) or isinstance(value, bool) and bool not in allowed):
                return f"'{name}' must be {' or '.join(kinds)}, got {json.dumps(value)[:40]}"
        return None


def _run_with_timeout(fn: Callable, arguments: dict, timeout: float):
    """(value, exception) of fn(**arguments) run on a daemon thread, or None when it is still running after
    `timeout` seconds (then it is abandoned: Python cannot kill a thread, and the episode must go on).
    A coroutine function runs on its own event loop in that thread, so it works under a running loop too."""
    box: list = []

    def target():
        try:
            box.append((resolve(fn(**arguments)), None))
        except BaseException as exc:  # noqa: BLE001 - a tool's failure is an observation, whatever it is
            box.append((None, exc))

    thread = threading.Thread(target=target, name=f"tool-{getattr(fn, '__name__', 'call')}", daemon=True)
    thread.start()
    thread.join(timeout)
    return box[0] if box else None


def resolve(value):
    """`value`, awaited when it is awaitable (an `async def` tool or method): on a fresh event loop, in a
    thread of its own when this thread already runs one (a rollout that steps environments in asyncio)."""
    if not inspect.isawaitable(value):
        return value
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(value))
    box: list = []

    def target():
        try:
            box.append((asyncio.run(_awaited(value)), None))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            box.append((None, exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if box[0][1] is not None:
        raise box[0][1]
    return box[0][0]


async def _awaited(awaitable):
    return await awaitable


def _as_text(value) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def _one_line(exc: BaseException, empty: str = "(no message)") -> str:
    return " ".join(str(exc).split())[:200] or empty


def python_tool(timeout: float = 5.0, memory_mb: int = 512) -> Callable:
    """A `run_python(code)` tool that runs the model's program in the code sandbox (rewards/sandbox.py)
    and answers what it printed; a program past `timeout` seconds is killed and reported as a timeout."""
    from posttrain.rewards.sandbox import Limits, Sandbox

    sandbox = Sandbox(Limits(timeout=float(timeout), cpu_seconds=float(timeout), memory_mb=int(memory_mb)), workers=1)

    def run_python(code: str) -> str:
        """Run a Python program in a sandbox and return what it printed.

        Args:
            code: The Python program; print what you want to see.
        """
        run = sandbox.run(code)
        if run.timed_out:
            raise TimeoutError(f"{timeout:g} s (the program was killed)")
        if run.output_exceeded:
            raise RuntimeError(f"the program printed more than {sandbox.limits.max_output_kb} KB")
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
            raise RuntimeError(last)
        return run.stdout.rstrip("\n")

    return run_python
