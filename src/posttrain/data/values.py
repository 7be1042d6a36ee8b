"""Checks of single cells: a string, or a conversation of {"role", "content"} messages.

Used by `formats` to validate rows; every problem is a DataError naming source, row and column.
Also the two directions between a completion cell and its text: `completion_text` (what a reward,
a scorer or a judge reads) and `completion_value` (what a sampled text becomes in a row).
"""

from __future__ import annotations

import difflib
import math

from posttrain.errors import data_error

ROLES = ("system", "developer", "user", "assistant", "tool")
_ROLE_HINTS = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant", "ai": "assistant"}


def completion_text(completion) -> str:
    """The text of a completion cell, as every reward, scorer and judge reads it.

    - a string: itself; None: "";
    - one message ({"role", "content"}): its content;
    - a list of messages: the content of the LAST assistant message (a message without a role counts
      as one; with no assistant message, the last message). In a multi-turn completion (assistant,
      user, assistant, or tool calls and results) that is the final answer, the turn a reward judges;
      earlier turns and tool outputs are not the model's answer;
    - content given as parts (`[{"type": "text", "text": ...}]`): the text parts joined; None: "";
    - a list with no message dict: its items as strings, joined.
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    messages = [m for m in completion if isinstance(m, dict)]
    if not messages:
        return "".join(str(m) for m in completion)
    assistant = [m for m in messages if m.get("role", "assistant") == "assistant"]
    return _content_text((assistant or messages)[-1].get("content"))


def _content_text(content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: keep the text ones
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def completion_value(text: str, conversational: bool):
    """A sampled text as a completion cell: the text, or (for conversational prompts) one assistant turn.
    What reward functions receive and what SFT / preference rows store; `completion_text` reads it back."""
    return [{"role": "assistant", "content": text}] if conversational else text


def is_conversational(value) -> bool:
    """True when `value` is a non-empty list of message dicts ({"role", "content"}), False for strings etc."""
    return isinstance(value, list) and len(value) > 0 and all(isinstance(m, dict) for m in value)


def check_text(value, source, i, column, *, allow_empty, allow_conversation=True, needs_assistant=False) -> str:
    """Check a string or conversation cell; return "standard" or "conversational"."""
    if isinstance(value, str):
        if not allow_empty and not value.strip():
            raise data_error(source, i, column, "is empty; expected non-empty text")
        return "standard"
    if allow_conversation and isinstance(value, list):
        kind = check_conversation(value, source, i, column)
        if not allow_empty and not any(_has_content(m) for m in value):
            raise data_error(source, i, column, "every message is empty; expected some content")
        if needs_assistant and not any(m.get("role") == "assistant" for m in value):
            raise data_error(source, i, column, "has no assistant message; completions are assistant turns")
        return kind
    expected = "a string or a list of {role, content} messages" if allow_conversation else "a string"
    raise data_error(source, i, column, f"expected {expected}, got {type_name(value)}")


def check_conversation(value, source, i, column) -> str:
    if not isinstance(value, list):
        raise data_error(
            source, i, column, f"expected a list of {{role, content}} messages, got {type_name(value)}"
        )
    if not value:
        raise data_error(source, i, column, "is an empty list; expected at least one {role, content} message")
    for k, message in enumerate(value):
        where = f"message {k}"
        if not isinstance(message, dict):
            raise data_error(
                source, i, column, f"{where}: expected a {{role, content}} object, got {type_name(message)}"
            )
        if "role" not in message:
            hint = ""
            if "from" in message and "value" in message:
                hint = " (this looks like ShareGPT 'from'/'value'; rename to 'role'/'content', human→user, gpt→assistant)"
            raise data_error(source, i, column, f"{where} has no 'role'{hint}")
        role = message["role"]
        if role not in ROLES:
            raise data_error(source, i, column, f"{where}: unknown role {role!r}; {_role_hint(role)}")
        content = message.get("content")
        ok = isinstance(content, (str, list)) or (content is None and message.get("tool_calls"))
        if not ok:
            got = "no 'content'" if "content" not in message else f"content of type {type_name(content)}"
            raise data_error(source, i, column, f"{where} ({role}) has {got}; expected 'content' as a string")
    return "conversational"


def _has_content(message: dict) -> bool:
    content = message.get("content")
    if isinstance(content, str):
        return bool(content.strip())
    return bool(content) or bool(message.get("tool_calls"))


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def type_name(value) -> str:
    if value is None:
        return "null"
    return {str: "str", list: "list", dict: "object", bool: "bool", int: "int", float: "float"}.get(
        type(value), type(value).__name__
    )


def _role_hint(role) -> str:
    if isinstance(role, str) and role.lower() in _ROLE_HINTS:
        return f"did you mean {_ROLE_HINTS[role.lower()]!r}?"
    close = difflib.get_close_matches(str(role), ROLES, n=1, cutoff=0.6)
    expected = f"expected one of {', '.join(ROLES)}"
    return f"did you mean {close[0]!r}? ({expected})" if close else expected
