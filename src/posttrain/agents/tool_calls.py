"""Tool calls in the model's own text, in the format its chat template renders them.

Two styles cover the templates we support:

- "hermes": Qwen2.5's (and the embedded model's) calls, each in its own block
  `<tool_call>\\n{"name": NAME, "arguments": {...}}\\n</tool_call>` after any text; several allowed.
- "llama3": Llama 3.1 / 3.2's JSON tool calls, the whole reply `{"name": NAME, "parameters": {...}}`,
  optionally after `<|python_tag|>`; several separated by `;`.

`parse_reply` never raises: malformed JSON, a call without a name, arguments that are not an object
become entries of `ParsedReply.errors` (the environment shows each to the model and counts it).
`format_tool_call` writes the exact text `parse_reply` reads back (SFT traces are written with it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from posttrain.agents.tools import ToolCall
from posttrain.errors import ConfigError

STYLES = ("hermes", "llama3")
_HERMES_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_PYTHON_TAG = "<|python_tag|>"
_ARGUMENT_KEYS = {"hermes": ("arguments", "parameters"), "llama3": ("parameters", "arguments")}  # written, accepted


@dataclass
class ParsedReply:
    content: str  # the reply's text without its tool calls
    calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line per call that could not be read


def parse_reply(text: str, style: str) -> ParsedReply:
    """The assistant reply `text` split into its prose and its tool calls (`style`: one of STYLES)."""
    _check_style(style)
    return _parse_hermes(text) if style == "hermes" else _parse_llama3(text)


def format_tool_call(call: ToolCall | list[ToolCall], style: str) -> str:
    """The assistant text that makes `call` (or several calls) in `style`; `parse_reply` reads it back."""
    _check_style(style)
    calls = call if isinstance(call, list) else [call]
    key = _ARGUMENT_KEYS[style][0]
    bodies = [json.dumps({"name": c.name, key: c.arguments}, ensure_ascii=False) for c in calls]
    if style == "hermes":
        return "\n".join(f"<tool_call>\n{body}\n</tool_call>" for body in bodies)
    return "; ".join(bodies)


def detect_style(tokenizer) -> str:
    """The style a tokenizer's chat template renders tool calls in, read from the template's text."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates (e.g. "default", "tool_use"): read them all
        template = "\n".join(t for t in template.values() if isinstance(t, str))
    if template:
        if "<tool_call>" in template:
            return "hermes"
        if _PYTHON_TAG in template or '"parameters": ' in template:
            return "llama3"
    raise ConfigError("tool_style: cannot tell from the tokenizer's chat template how it writes tool calls; "
                      "set tool_style=hermes|llama3")


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ConfigError(f"tool_style={style!r} is not supported; use one of {', '.join(STYLES)}")


def _parse_hermes(text: str) -> ParsedReply:
    reply = ParsedReply(content=_HERMES_BLOCK.sub("", text).strip())
    for body in _HERMES_BLOCK.findall(text):
        _add_call(reply, body.strip(), "hermes")
    if "<tool_call>" in reply.content:  # an opened block never closed (often: the reply was cut at max tokens)
        reply.content = reply.content.split("<tool_call>", 1)[0].strip()
        reply.errors.append("malformed tool call: <tool_call> without </tool_call>")
    return reply


def _parse_llama3(text: str) -> ParsedReply:
    content, tagged, body = text.strip(), False, ""
    if _PYTHON_TAG in content:
        content, body = (part.strip() for part in content.split(_PYTHON_TAG, 1))
        tagged = True
    elif content.startswith("{"):
        content, body = "", content
    reply = ParsedReply(content=content)
    if not body:
        if tagged:
            reply.errors.append(f"malformed tool call: nothing after {_PYTHON_TAG}")
        return reply
    decoder, position = json.JSONDecoder(), 0
    while position < len(body):
        try:
            value, end = decoder.raw_decode(body, position)
        except json.JSONDecodeError as exc:
            reply.errors.append(f"malformed tool call JSON: {exc.msg} at char {exc.pos}")
            return reply
        _add_call(reply, value, "llama3")
        rest = body[end:].lstrip()
        if rest and not rest.startswith(";"):
            reply.errors.append(f"malformed tool call: expected ';' between calls, got {rest[:20]!r}")
            return reply
        position = len(body) - len(rest[1:].lstrip()) if rest else len(body)
    return reply


def _add_call(reply: ParsedReply, body, style: str) -> None:
    """Append the call that `body` (JSON text or a decoded value) holds, or the reason it holds none."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as exc:
            reply.errors.append(f"malformed tool call JSON: {exc.msg} at char {exc.pos}")
            return
    if not isinstance(body, dict):
        reply.errors.append(f"malformed tool call: expected a JSON object, got {type(body).__name__}")
        return
    name = body.get("name")
    if not isinstance(name, str) or not name:
        reply.errors.append('malformed tool call: no "name"')
        return
    written, accepted = _ARGUMENT_KEYS[style]
    arguments = body.get(written, body.get(accepted))
    arguments = {} if arguments is None else arguments  # a call without arguments (as TRL reads it)
    if not isinstance(arguments, dict):
        reply.errors.append(f'malformed tool call to {name}: "{written}" must be a JSON object')
        return
    reply.calls.append(ToolCall(name, arguments))
