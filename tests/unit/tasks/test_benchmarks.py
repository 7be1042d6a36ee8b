"""GSM8K / MATH / MATH-500 / AIME rows, written to local files in each benchmark's own columns, become
prompt + answer rows that math_accuracy scores; hub names map to their config and split (no download)."""

import json

import pytest

from posttrain.errors import DataError
from posttrain.methods.scoring import resolve_scorers
from posttrain.tasks.benchmarks import INSTRUCTION, detect_kind, hub_benchmark
from posttrain.tasks.sources import load_rows

GSM8K = [{"question": "Tom has 1,200 apples and buys 34 more. How many now?",
          "answer": "He has 1200 + 34 = <<1200+34=1234>>1234 apples.\n#### 1,234"},
         {"question": "Half of 7?", "answer": "7 / 2 = 3.5\n#### 3.5"}]
MATH = [{"problem": "Compute $\\frac{2}{4}$.", "level": "Level 1", "type": "Prealgebra",
         "solution": "Reduce: $\\frac{2}{4} = \\boxed{\\frac{1}{2}}$."}]
MATH_500 = [{"problem": "What is $\\{1,2\\} \\cup \\{2\\}$?", "solution": "It is $\\boxed{\\{1,2\\}}$.",
             "answer": "\\{1,2\\}", "subject": "Algebra", "level": 1, "unique_id": "test/algebra/1.json"}]
AIME = [{"ID": "2024-I-1", "Problem": "Find the remainder.", "Solution": "... so \\boxed{33}", "Answer": 33}]


def write(path, rows):
    if path.suffix == ".parquet":
        import datasets

        datasets.Dataset.from_list(rows).to_parquet(str(path))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_each_benchmark_becomes_prompt_and_gold_answer(tmp_path):
    gsm8k = load_rows(write(tmp_path / "gsm8k.parquet", GSM8K))
    assert [r["answer"] for r in gsm8k] == ["1234", "3.5"]  # after '####', thousands comma dropped
    assert gsm8k[0]["prompt"] == [{"role": "user", "content": f"{GSM8K[0]['question']}\n\n{INSTRUCTION}"}]
    assert gsm8k[0]["benchmark"] == "gsm8k" and gsm8k[0]["solution"] == GSM8K[0]["answer"]
    math_rows = load_rows(write(tmp_path / "math.jsonl", MATH))
    assert math_rows[0]["answer"] == "\\frac{1}{2}" and math_rows[0]["level"] == "Level 1"  # the solution's box
    assert load_rows(write(tmp_path / "math500.jsonl", MATH_500))[0]["answer"] == "\\{1,2\\}"  # its answer column
    aime = load_rows(write(tmp_path / "aime.parquet", AIME))
    assert aime[0]["answer"] == "33" and aime[0]["benchmark"] == "aime" and "Find the remainder." in aime[0]["prompt"][0]["content"]
    own = [{"prompt": "2+2?", "answer": "4", "question": "x"}]
    assert load_rows(write(tmp_path / "own.jsonl", own)) == own  # a prompt column: the user's format, untouched


def test_kinds_by_columns_and_hub_names():
    assert [detect_kind(r) for r in (GSM8K[0], MATH[0], MATH_500[0], AIME[0])] == ["gsm8k", "math", "math", "aime"]
    assert detect_kind({"problem": "p", "answer": "1"}) == "aime" and detect_kind({"question": "q", "answer": "4"}) is None
    assert hub_benchmark("openai/gsm8k") == hub_benchmark("GSM8K")
    assert (hub_benchmark("openai/gsm8k").config, hub_benchmark("openai/gsm8k").split) == ("main", "test")
    assert hub_benchmark("HuggingFaceH4/MATH-500").kind == "math" and hub_benchmark("hendrycks/competition_math").split == "test"
    assert hub_benchmark("HuggingFaceH4/aime_2024").kind == "aime" and hub_benchmark("my/data") is None


def test_a_row_without_a_gold_answer_is_named(tmp_path):
    path = write(tmp_path / "bad.jsonl", [MATH[0], {"problem": "p", "solution": "no box here"}])
    with pytest.raises(DataError, match=r"bad.jsonl, row 1: a math row needs problem and answer"):
        load_rows(path)


@pytest.mark.parametrize("rows,completion,expected", [
    (GSM8K, "1200 + 34 = 1234.\n#### 1,234", 1.0),  # GSM8K's own format
    (GSM8K, "So the total is \\boxed{1234}.", 1.0),
    (GSM8K, "\\boxed{1243}", 0.0),
    (MATH, "It is \\boxed{0.5}", 1.0),  # equivalence, not string match: 1/2 = 0.5
    (MATH, "It is \\boxed{\\dfrac12}", 1.0),
    (MATH, "The answer is $\\frac{1}{2}$ but unboxed", 0.0),  # the instruction asks for a box: missing
    (MATH_500, "\\boxed{\\{2, 1\\}}", 1.0),  # sets in any order
    (AIME, "\\boxed{033}", 1.0),
])
def test_math_accuracy_is_the_default_scorer_and_checks_equivalence(tmp_path, rows, completion, expected):
    loaded = load_rows(write(tmp_path / "b.jsonl", rows))
    score = resolve_scorers(None, str(tmp_path / "b.jsonl"), loaded)["math_accuracy"]
    columns = {k: [loaded[0][k]] for k in loaded[0] if k != "prompt"}
    assert score([loaded[0]["prompt"]], [completion], **columns) == [expected]
