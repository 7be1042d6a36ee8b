"""Math benchmarks as eval rows: GSM8K, MATH (and MATH-500), AIME, recognised by their usual hub
names and by their columns, turned into `prompt` + `answer` rows that `math_accuracy` scores.

| benchmark | columns | gold answer |
|---|---|---|
| GSM8K (openai/gsm8k) | `question`, `answer` | the text after `####` in `answer` ("#### 1,234" -> "1234"; the full text goes to `solution`) |
| MATH (hendrycks/competition_math, ...) | `problem`, `solution`, `level`, `type` | the last `\\boxed{}` of `solution` |
| MATH-500 (HuggingFaceH4/MATH-500) | `problem`, `solution`, `answer`, `subject`, `level` | `answer` |
| AIME (HuggingFaceH4/aime_2024, AI-MO/aimo-validation-aime, ...) | `problem`, `answer` (any case) | `answer` |

The prompt is one user message: the problem and the instruction Qwen2.5-Math and DeepSeek-R1 are
evaluated with, "Please reason step by step, and put your final answer within \\boxed{}.", so
`math_accuracy`'s default extraction (the last box) finds the answer. Rows that already have a
`prompt` column are the user's own format and pass unchanged. Other columns are kept; the rows gain
`benchmark` (gsm8k, math or aime), which makes `math_accuracy` the eval stage's default scorer.
"""

from __future__ import annotations

from dataclasses import dataclass

from posttrain.data.answers import extract_boxed, extract_hash_answer
from posttrain.errors import data_error

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class HubBenchmark:
    kind: str  # gsm8k, math or aime
    config: str | None  # the datasets config name it needs
    split: str  # its evaluation split


# The usual hub names (compared case-insensitively), with the config and split an evaluation reads.
HUB_NAMES: dict[str, HubBenchmark] = {name.lower(): spec for name, spec in {
    "openai/gsm8k": HubBenchmark("gsm8k", "main", "test"),
    "gsm8k": HubBenchmark("gsm8k", "main", "test"),
    "HuggingFaceH4/MATH-500": HubBenchmark("math", None, "test"),
    "hendrycks/competition_math": HubBenchmark("math", None, "test"),
    "lighteval/MATH": HubBenchmark("math", "all", "test"),
    "DigitalLearningGmbH/MATH-lighteval": HubBenchmark("math", None, "test"),
    "HuggingFaceH4/aime_2024": HubBenchmark("aime", None, "train"),
    "AI-MO/aimo-validation-aime": HubBenchmark("aime", None, "train"),
    "Maxwell-Jia/AIME_2024": HubBenchmark("aime", None, "train"),
    "math-ai/aime24": HubBenchmark("aime", None, "test"),
    "math-ai/aime25": HubBenchmark("aime", None, "test"),
    "yentinglin/aime_2025": HubBenchmark("aime", None, "train"),
}.items()}


def hub_benchmark(source: str) -> HubBenchmark | None:
    """The benchmark a hub name stands for (openai/gsm8k -> gsm8k, config main, split test), else None."""
    return HUB_NAMES.get(str(source).strip().lower())


def detect_kind(row: dict) -> str | None:
    """gsm8k, math or aime from a row's columns (any case), None when it is not one of them."""
    keys = {k.lower() for k in row}
    if "prompt" in keys:
        return None
    if {"question", "answer"} <= keys and "####" in str(_get(row, "answer")):
        return "gsm8k"
    if "problem" not in keys:
        return None
    if keys & {"level", "type", "subject"} or ("solution" in keys and "answer" not in keys):
        return "math"  # the MATH family carries its level and subject
    return "aime" if "answer" in keys else None


def benchmark_rows(rows: list[dict], source: str, kind: str | None = None) -> list[dict]:
    """`rows` as prompt + answer rows when they are a benchmark (named `kind`, else told by columns);
    unchanged otherwise. A row whose gold answer cannot be found is a DataError naming it."""
    kind = kind or (detect_kind(rows[0]) if rows else None)
    if kind is None or (rows and "prompt" in rows[0]):
        return rows
    out = []
    for i, row in enumerate(rows):
        question = _get(row, "question" if kind == "gsm8k" else "problem")
        gold = _gold(row, kind)
        if question is None or gold is None:
            need = "question and an answer with '#### N'" if kind == "gsm8k" else "problem and answer (or a solution with \\boxed{})"
            raise data_error(source, i, None, f"a {kind} row needs {need}; found columns {', '.join(row)}")
        kept = {k: v for k, v in row.items() if k.lower() not in ("prompt", "answer")}
        if kind == "gsm8k":  # the worked solution is not lost when `answer` becomes the bare number
            kept.setdefault("solution", _get(row, "answer"))
        out.append({**kept, "prompt": [{"role": "user", "content": f"{str(question).strip()}\n\n{INSTRUCTION}"}],
                    "answer": gold, "benchmark": kind})
    return out


def _get(row: dict, column: str):
    for key, value in row.items():
        if key.lower() == column:
            return value
    return None


def _gold(row: dict, kind: str) -> str | None:
    if kind == "gsm8k":
        return extract_hash_answer(str(_get(row, "answer") or ""))
    answer = _get(row, "answer")
    if answer is not None and str(answer).strip():
        return str(answer).strip()
    return extract_boxed(str(_get(row, "solution") or ""))  # MATH: the solution's last box
