"""Calculator: arithmetic the embedded model cannot do in its head, solved with a `calculate` tool.

The user asks "What is 347 * 28 - 91?"; the gold completion is a tool-use trace in TRL's
conversational format: an assistant turn that calls the tool (structured `tool_calls`, which the chat
template renders in its own tool-call format, e.g. Qwen2.5's <tool_call> JSON), the tool's result as
a `tool` message, and the final answer in tags:

    assistant: tool_calls=[calculate(expression="347 * 28 - 91")]
    tool:      9625
    assistant: <answer>9625</answer>

Problems mix 2-3 digit multiplication with + and - (and parentheses), so the products are out of
reach of mental arithmetic for a tiny model and the tool is the way to the answer. Rows carry the
tool's JSON schema in a `tools` column (as TRL's `tools=`), so `posttrain sft dataset=task:calculator`
renders the "Tools:" line the online stages render, and `answer` for the scorers.

`calculate(expression)` evaluates + - * / and parentheses on numbers by walking the `ast` (never
`eval`): anything else (names, calls, powers, attributes) raises ValueError with a one-line reason,
which the agent's tool box turns into an error observation the model reads. The environment that
serves these rows is agents/calculator.py.
"""

from __future__ import annotations

import ast
import copy
import operator
import random

from posttrain.data.values import completion_text
from posttrain.tasks.arithmetic import answers_match, extract_answer
from posttrain.tasks.base import Task

MAX_EXPRESSION = 200  # characters: a tool argument longer than this is refused
MAX_MAGNITUDE = 10**15  # a number (or intermediate result) beyond this is refused: no runaway arithmetic
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_SCHEMA: dict = {}
SHAPES = ("a*b", "a*b+c", "a*b-c", "c+a*b", "(a+b)*c", "a*b-c*d")


def _value(node: ast.AST) -> float | int:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value = node.value
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ValueError("division by zero")
        value = _BINARY[type(node.op)](left, right)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        value = _UNARY[type(node.op)](_value(node.operand))
    else:
        raise ValueError(f"unsupported element {ast.unparse(node)!r}; use numbers, + - * / and parentheses")
    if abs(value) > MAX_MAGNITUDE:
        raise ValueError(f"number too large (over {MAX_MAGNITUDE:.0e})")
    return value


def format_number(value: float | int) -> str:
    """An integer-valued result without ".0"; others rounded to 6 decimals."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / and parentheses.

    Args:
        expression: the expression, e.g. "347 * 28 - 91"
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError("expression must be a non-empty string such as \"12 * 34\"")
    if len(expression) > MAX_EXPRESSION:
        raise ValueError(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"cannot parse {expression!r}; write e.g. \"12 * (3 + 4)\"") from None
    return format_number(_value(tree.body))


# ------------------------------------------------------------------------------------ problems


def make_expression(rng: random.Random) -> str:
    """A random expression of one of SHAPES: 2-3 digit factors, 1-3 digit addends, result >= 0."""
    shape = rng.choice(SHAPES)
    while True:
        a, b = rng.randint(12, 999), rng.randint(12, 99)
        c, d = rng.randint(2, 999), rng.randint(2, 99)
        text = (shape.replace("a", str(a)).replace("b", str(b)).replace("c", str(c)).replace("d", str(d))
                .replace("*", " * ").replace("+", " + ").replace("-", " - "))
        if int(calculate(text)) >= 0:
            return text


def tool_call(name: str, **arguments) -> dict:
    """A structured tool call as transformers' chat templates read it (assistant `tool_calls`)."""
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def calculator_schema() -> dict:
    """The tool's JSON schema, made by transformers from its signature and docstring (as TRL's `tools=`);
    made once (transformers parses the docstring), copied per row."""
    if not _SCHEMA:
        from transformers.utils import get_json_schema

        _SCHEMA.update(get_json_schema(calculate))
    return copy.deepcopy(_SCHEMA)


def make_row(expression: str) -> dict:
    answer = calculate(expression)
    return {
        "prompt": [{"role": "user", "content": f"What is {expression}?"}],
        "completion": [
            {"role": "assistant", "content": "", "tool_calls": [tool_call("calculate", expression=expression)]},
            {"role": "tool", "name": "calculate", "content": answer},
            {"role": "assistant", "content": f"<answer>{answer}</answer>"},
        ],
        "tools": [calculator_schema()],
        "answer": answer,
    }


def make_example(rng: random.Random) -> tuple[str, dict]:
    expression = make_expression(rng)
    return expression, make_row(expression)


# ------------------------------------------------------------------------------------- scorers


def accuracy(prompts, completions, answer=None, **columns) -> list[float]:
    """1.0 when the final answer (the <answer> of the last assistant message) equals the gold `answer`."""
    if answer is None:
        raise ValueError("calculator accuracy needs the 'answer' column")
    return [float(answers_match(extract_answer(completion_text(c)), a)) for c, a in zip(completions, answer)]


def tool_use(prompts, completions, **columns) -> list[float]:
    """Tool-call validity: 1.0 when the conversation got at least one tool result and none of its tool
    results was an error observation ("error: ..."); a plain-text completion scores 0."""
    scores = []
    for c in completions:
        results = [m.get("content") or "" for m in c if isinstance(m, dict) and m.get("role") == "tool"] \
            if isinstance(c, list) else []
        scores.append(float(bool(results) and not any(str(r).startswith("error") for r in results)))
    return scores


accuracy.reward_range = tool_use.reward_range = (0.0, 1.0)

TASK = Task(
    name="calculator",
    make_example=make_example,
    scorers={"accuracy": accuracy, "tool_use": tool_use},
    headline="accuracy",
    default_max_new_tokens=96,  # a tool call alone is ~73 tokens (the tokenizer splits JSON finely)
    description="Arithmetic with a calculate(expression) tool; answer in <answer>.",
)
