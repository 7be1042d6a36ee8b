"""task:calculator: the safe evaluator on hand values and hostile input, the gold tool-use traces, the scorers."""

import ast
import operator

import pytest

from posttrain.embedded import EMBEDDED_MODEL_DIR
from posttrain.tasks import get_task
from posttrain.tasks.calculator import MAX_EXPRESSION, accuracy, calculate, make_row, tool_use


@pytest.mark.parametrize("expression, value", [
    ("347 * 28 - 91", "9625"), ("(12 + 3) * 4", "60"), ("7 / 2", "3.5"), ("-3 + 5", "2"), ("10 / 4 * 2", "5"),
    ("1 / 3", "0.333333"), ("  2*3  ", "6"), ("2.5 * 4", "10"), ("100 - 250", "-150"),
])
def test_calculate_hand_values(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize("expression, message", [
    ("__import__('os').system('true')", "unsupported element"), ("2 ** 10", "unsupported element"),
    ("x + 1", "unsupported element"), ("(1).real", "unsupported element"), ("'a' * 3", "unsupported element"),
    ("1 / 0", "division by zero"), ("1 / (2 - 2)", "division by zero"), ("", "non-empty"), ("1 +", "cannot parse"),
    ("9" * 20, "too large"), ("999999999 * 999999999", "too large"), ("1+" * MAX_EXPRESSION + "1", "longer than"),
    ("True + 1", "unsupported element"),
])
def test_calculate_refuses_with_one_line_reason(expression, message):
    with pytest.raises(ValueError, match=message):
        calculate(expression)


def _python_value(expression: str) -> int:
    """An independent oracle: Python's own arithmetic on the (trusted, generated) expression's tree."""
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}

    def walk(node):
        return node.value if isinstance(node, ast.Constant) else ops[type(node.op)](walk(node.left), walk(node.right))
    return walk(ast.parse(expression, mode="eval").body)


def test_rows_are_gold_tool_use_traces():
    rows = get_task("calculator").rows("train", 300)
    assert rows == get_task("calculator").rows("train", 300)
    shapes = set()
    for row in rows:
        question = row["prompt"][0]["content"]
        expression = question.removeprefix("What is ").removesuffix("?")
        call, result, final = row["completion"]
        assert call["tool_calls"][0]["function"] == {"name": "calculate", "arguments": {"expression": expression}}
        assert result == {"role": "tool", "name": "calculate", "content": row["answer"]}
        assert final == {"role": "assistant", "content": f"<answer>{row['answer']}</answer>"}
        assert int(row["answer"]) == _python_value(expression) >= 0
        assert "*" in expression  # a product: out of reach of the tiny model's mental arithmetic
        shapes.add(expression.count(" ") // 2)  # number of operators
        assert row["tools"][0]["function"]["name"] == "calculate"
        assert row["tools"][0]["function"]["parameters"]["required"] == ["expression"]
    assert shapes == {1, 2, 3}


def test_splits_disjoint():
    task = get_task("calculator")
    train = {r["prompt"][0]["content"] for r in task.rows("train", 2000)}
    test = [r["prompt"][0]["content"] for r in task.rows("test", 200)]
    assert len(set(test)) == 200 and not train & set(test)


def test_whole_gold_trace_fits_the_embedded_model_with_room():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_MODEL_DIR)
    rows = get_task("calculator").rows("train", 200) + get_task("calculator").rows("test", 50)
    lengths = [len(tokenizer.apply_chat_template(r["prompt"] + r["completion"], tools=r["tools"], tokenize=True,
                                                 return_dict=True)["input_ids"]) for r in rows]
    assert max(lengths) <= 170  # of 512 positions; measured max 158
    text = tokenizer.apply_chat_template(rows[0]["prompt"] + rows[0]["completion"], tools=rows[0]["tools"], tokenize=False)
    assert text.startswith("<|bos|><|system|>\nTools: calculate(expression)<|end|>\n<|user|>\nWhat is ")
    assert '<tool_call>\n{"name": "calculate", "arguments": {"expression": ' in text


def test_scorers_on_hand_cases():
    row = make_row("12 * 34 + 5")
    assert row["answer"] == "413"
    good = row["completion"]
    wrong = good[:-1] + [{"role": "assistant", "content": "<answer>412</answer>"}]
    errored = [good[0], {"role": "tool", "content": "error: calculate raised ValueError: x"}, good[2]]
    no_tool = [{"role": "assistant", "content": "<answer>413</answer>"}]
    completions = [good, wrong, errored, no_tool, "<answer>413</answer>"]
    answers = ["413"] * 5
    assert accuracy(None, completions, answer=answers) == [1.0, 0.0, 1.0, 1.0, 1.0]
    assert tool_use(None, completions) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert get_task("calculator").score(None, completions, answer=answers) == [1.0, 0.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="answer"):
        accuracy(None, completions)
