"""Tool calls parsed from the text real chat templates render (TRL's Qwen2.5 and Llama 3.1 templates, the
embedded one), the same as TRL's own parser reads them, and written back by format_tool_call."""

import importlib.util
import os
from pathlib import Path

import pytest

from posttrain.agents.tool_calls import STYLES, detect_style, format_tool_call, parse_reply
from posttrain.agents.tools import ToolCall
from posttrain.errors import ConfigError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TRL_TEMPLATES = Path(importlib.util.find_spec("trl").submodule_search_locations[0]) / "chat_templates"
CALLS = [ToolCall("calculate", {"expression": "12*(3+4)"}), ToolCall("type", {"field": "email", "text": "a@b.c"})]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from posttrain.embedded import EMBEDDED_MODEL_DIR

    return AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR)


def template(name: str) -> str:
    return (TRL_TEMPLATES / f"{name}.jinja").read_text()


def assistant_text(tok, chat_template: str, calls: list[ToolCall], content: str = "") -> str:
    """What `chat_template` renders for an assistant message with structured tool_calls, the turn's text only."""
    user = [{"role": "user", "content": "hi"}]
    assistant = {"role": "assistant", "content": content,
                 "tool_calls": [{"type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]}
    prompt = tok.apply_chat_template(user, chat_template=chat_template, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(user + [assistant], chat_template=chat_template, tokenize=False)
    assert full.startswith(prompt)
    return full[len(prompt):]


def test_hermes_calls_as_qwen25_and_the_embedded_template_render_them(tok):
    qwen = assistant_text(tok, template("qwen2_5"), CALLS, content="Let me compute.")
    assert qwen.endswith("<|im_end|>\n")
    parsed = parse_reply(qwen.removesuffix("<|im_end|>\n"), "hermes")
    assert parsed.calls == CALLS and parsed.content == "Let me compute." and parsed.errors == []

    embedded = assistant_text(tok, tok.chat_template, CALLS, content="Let me compute.")
    assert embedded == "Let me compute.\n" + format_tool_call(CALLS, "hermes") + "<|end|>"
    assert format_tool_call(CALLS[0], "hermes") == \
        '<tool_call>\n{"name": "calculate", "arguments": {"expression": "12*(3+4)"}}\n</tool_call>'
    assert parse_reply(embedded.removesuffix("<|end|>"), "hermes") == parsed


def test_hermes_parse_matches_trls_parse_response(tok):
    from transformers import AutoTokenizer
    from trl.chat_template_utils import add_response_schema

    from posttrain.embedded import EMBEDDED_MODEL_DIR

    qwen_tok = AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR)
    qwen_tok.chat_template = template("qwen2_5")
    add_response_schema(qwen_tok)
    for text in ("Let me see.\n" + format_tool_call(CALLS, "hermes"), format_tool_call(CALLS[1], "hermes"), "No tools: 84"):
        theirs = qwen_tok.parse_response(text, prefix="")
        ours = parse_reply(text, "hermes")
        assert ours.content == theirs.get("content", "")
        assert [{"name": c.name, "arguments": c.arguments} for c in ours.calls] == \
            [call["function"] for call in theirs.get("tool_calls", [])]


def test_llama3_calls_as_the_llama31_template_renders_them(tok):
    text = assistant_text(tok, template("llama3_1"), CALLS[:1])  # the template allows one call per message
    assert text == '{"name": "calculate", "parameters": {"expression": "12*(3+4)"}}<|eot_id|>'
    parsed = parse_reply(text.removesuffix("<|eot_id|>"), "llama3")
    assert parsed.calls == CALLS[:1] and parsed.content == "" and parsed.errors == []
    tagged = parse_reply("<|python_tag|>" + format_tool_call(CALLS, "llama3"), "llama3")
    assert tagged.calls == CALLS and tagged.errors == []
    assert format_tool_call(CALLS, "llama3") == \
        '{"name": "calculate", "parameters": {"expression": "12*(3+4)"}}; {"name": "type", "parameters": {"field": "email", "text": "a@b.c"}}'
    assert parse_reply("The answer is 84.", "llama3").calls == []


@pytest.mark.parametrize("style", STYLES)
def test_round_trip(style):
    many = CALLS + [ToolCall("submit", {}), ToolCall("open", {"url": "https://x.test/a?b=1;c=\"2\"", "n": [1, {"k": None}]})]
    for calls in (many[:1], many):
        assert parse_reply(format_tool_call(calls, style), style).calls == calls


def test_malformed_calls_are_errors_never_exceptions():
    hermes = parse_reply('ok <tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call><tool_call>{"name": "f", "arguments": {x}}</tool_call>'
                         '<tool_call>{"arguments": {}}</tool_call><tool_call>{"name": "f", "arguments": [1]}</tool_call>'
                         '<tool_call>["f"]</tool_call><tool_call>{"name": "g"', "hermes")
    assert hermes.content == "ok" and hermes.calls == [ToolCall("f", {"x": 1})]
    assert hermes.errors == ["malformed tool call JSON: Expecting property name enclosed in double quotes at char 28",
                             'malformed tool call: no "name"',
                             'malformed tool call to f: "arguments" must be a JSON object',
                             "malformed tool call: expected a JSON object, got list",
                             "malformed tool call: <tool_call> without </tool_call>"]
    assert parse_reply('{"name": "f", "parameters": {"x": 1}} {"name": "g"}', "llama3").errors == \
        ["malformed tool call: expected ';' between calls, got '{\"name\": \"g\"}'"]
    assert parse_reply('{"name": "f", "parameters": 3}', "llama3").errors == ['malformed tool call to f: "parameters" must be a JSON object']
    assert parse_reply('{"name": "f", "parameters": {', "llama3").errors[0].startswith("malformed tool call JSON:")
    assert parse_reply("<|python_tag|>", "llama3").errors == ["malformed tool call: nothing after <|python_tag|>"]


def test_detect_style(tok):
    from posttrain.models.loading import DEFAULT_CHAT_TEMPLATE

    assert detect_style(tok) == "hermes"
    for name, style in (("qwen2_5", "hermes"), ("qwen3", "hermes"), ("llama3_1", "llama3"), ("llama3_2", "llama3")):
        assert detect_style(type("Tok", (), {"chat_template": template(name)})) == style, name
    for chat_template in (None, DEFAULT_CHAT_TEMPLATE):
        with pytest.raises(ConfigError, match="set tool_style=hermes|llama3"):
            detect_style(type("Tok", (), {"chat_template": chat_template}))
    with pytest.raises(ConfigError, match="tool_style='json' is not supported"):
        parse_reply("x", "json")
