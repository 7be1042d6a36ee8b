"""`code_tests`: run the code of each completion against its test cases in the sandbox; the reward is
the fraction of tests passed (`mode="fraction"`) or 1 only if every test passes (`mode="all"`).

Seed 000 L316-336 (DeepSeek-R1's accuracy reward for programming problems): "compile and execute
the submitted code, and set R_i(y) according to the number of test cases passed" -> `fraction`.
Seed 003 L2949-2953 (GRPO+/DeepCoder's sparse outcome reward): "1 if all unit tests pass, 0 if any
test fails or the output is improperly formatted" -> `all`.

The code is the last fenced block of the completion (```python ... ``` or ``` ... ```), else the
whole text. The tests of a row (the `tests_column`, one value per completion) are one of:

- a list of Python snippets (usually `assert` statements): the program runs once, then each
  snippet runs in its namespace; a snippet passes if it finishes without raising;
- a list of `{"input": str, "output": str}`: one execution per case with `input` on stdin; a case
  passes if the program exits 0 and prints `output` (both compared with surrounding whitespace and
  trailing spaces on each line removed). `{"inputs": [...], "outputs": [...]}` (APPS style) works too;
- a single string of test code (e.g. `def check(f): ...` then `check(solve)`): one test, run after
  the program like a snippet.

Any of these may arrive JSON-encoded in a string (CSV and Parquet columns). A row whose tests are
None (or an empty list) gets None: the reward does not apply to it.

With `hidden_tests_column=NAME` the reward uses that column's tests instead: the prompt may show the
`tests_column` ones, and a program that special-cases the inputs it was shown gains nothing.
How a program is kept from forging its result: sandbox.py, sandbox_rpc.py and docs/sandbox.md.
"""

from __future__ import annotations

import json
import os
import re
from typing import Callable

from posttrain.errors import ConfigError, DataError
from posttrain.rewards.format import completion_text
from posttrain.rewards.registry import check_choice
from posttrain.rewards.sandbox import Execution, Limits, Sandbox, default_workers

MODES = ("fraction", "all")
LANGUAGES = ("python",)
_FENCE = re.compile(r"```[ \t]*([\w+.#-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PYTHON_TAGS = ("", "python", "py", "python3")


def extract_code(text: str) -> str:
    """The last fenced Python (or untagged) code block; an unclosed final fence's body (a completion
    cut at max length); else the whole text."""
    blocks = [body for tag, body in _FENCE.findall(text) if tag.lower() in _PYTHON_TAGS]
    if blocks:
        return blocks[-1]
    tail = text.rsplit("```", 1)
    if len(tail) == 2 and text.count("```") % 2 == 1:  # an opening fence without its closing one
        first_line, _, body = tail[1].partition("\n")
        if first_line.strip().lower() in _PYTHON_TAGS:
            return body
    return text


def parse_tests(value) -> tuple[str, list] | None:
    """("checks", [snippet, ...]) or ("stdio", [(input, output), ...]); None when there are none."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass  # test code that starts with a bracket
    if value is None:
        return None
    if isinstance(value, str):
        return ("checks", [value]) if value.strip() else None
    if isinstance(value, dict) and "inputs" in value and "outputs" in value:
        if len(value["inputs"]) != len(value["outputs"]):
            raise ValueError(f"{len(value['inputs'])} inputs but {len(value['outputs'])} outputs")
        value = [{"input": i, "output": o} for i, o in zip(value["inputs"], value["outputs"])]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of test strings, a list of {{input, output}} cases or a string of test code, "
                         f"got {type(value).__name__}")
    if not value:
        return None
    if all(isinstance(t, str) for t in value):
        return "checks", list(value)
    if all(isinstance(t, dict) and "input" in t and "output" in t for t in value):
        return "stdio", [(_text(t["input"]), _text(t["output"])) for t in value]
    raise ValueError("expected every test to be a string (Python code such as an assert) or every test to be "
                     "{'input': str, 'output': str}, not a mix")


def _text(value) -> str:
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def same_output(actual: str, expected: str) -> bool:
    norm = (lambda s: "\n".join(line.rstrip() for line in s.replace("\r\n", "\n").strip().split("\n")))
    return norm(actual) == norm(expected)


def code_tests(tests_column: str = "tests", hidden_tests_column: str | None = None, mode: str = "fraction", timeout: float = 5.0, cpu_seconds: float = 5.0,
               memory_mb: int = 1024, max_processes: int = 32, max_file_mb: int = 16, max_output_kb: int = 1024,
               workers: int | None = None, language: str = "python", python: str | None = None) -> Callable:
    """The reward function; options as in `reward_funcs=[code_tests:timeout=5:mode=all]` (docs/sandbox.md)."""
    check_choice("code_tests", "mode", mode, MODES)
    if language not in LANGUAGES:
        raise ConfigError(f"code_tests: language {language!r} is not supported; use language=python")
    for option, column in (("tests_column", tests_column), ("hidden_tests_column", hidden_tests_column)):
        if column is not None and (not isinstance(column, str) or not column) or option == "tests_column" and column is None:
            raise ConfigError(f"code_tests: {option} must be a column name, got {column!r}")
    scored_column = hidden_tests_column or tests_column
    numbers = {"timeout": timeout, "cpu_seconds": cpu_seconds, "memory_mb": memory_mb, "max_processes": max_processes,
               "max_file_mb": max_file_mb, "max_output_kb": max_output_kb, "workers": workers}
    for name, value in numbers.items():
        if value is None and name == "workers":
            continue
        integral = name not in ("timeout", "cpu_seconds")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or \
                (integral and value != int(value)):
            kind = "a positive integer" if integral else "a positive number of seconds"
            raise ConfigError(f"code_tests: {name} must be {kind}, got {value!r}")
    if memory_mb < 64:
        raise ConfigError(f"code_tests: memory_mb={memory_mb} is too small for the Python interpreter; use >= 64")
    limits = Limits(timeout=float(timeout), cpu_seconds=float(cpu_seconds), memory_mb=int(memory_mb),
                    max_processes=int(max_processes), max_file_mb=int(max_file_mb), max_output_kb=int(max_output_kb))
    if python is not None and not (isinstance(python, str) and os.access(python, os.X_OK)):
        raise ConfigError(f"code_tests: python={python!r} is not an executable; give the path of a Python interpreter")
    sandbox = Sandbox(limits, workers=int(workers) if workers else default_workers(), python=python)

    def code_tests_reward(prompts, completions, **columns) -> list[float | None]:
        if scored_column not in columns:
            given = ", ".join(sorted(k for k in columns if k != "completion_ids")) or "none"
            option = "hidden_tests_column" if hidden_tests_column else "tests_column"
            raise DataError(f"code_tests reads the test cases from the dataset column '{scored_column}', which this "
                            f"dataset lacks (its columns: {given}); add it or set code_tests:{option}=NAME")
        jobs, owners, totals = [], [], []
        for i, (completion, value) in enumerate(zip(completions, columns[scored_column])):
            try:
                tests = parse_tests(value)
            except (ValueError, TypeError) as exc:
                raise DataError(f"code_tests, column '{scored_column}' of completion {i}: {exc}") from None
            totals.append(None if tests is None else len(tests[1]))
            if tests is None:
                continue
            code = extract_code(completion_text(completion))
            kind, cases = tests
            if kind == "checks":
                jobs.append((code, "", cases))
                owners.append((i, None))
            else:
                for stdin, expected in cases:
                    jobs.append((code, stdin, None))
                    owners.append((i, expected))
        passed = [0] * len(totals)
        for (i, expected), run in zip(owners, sandbox.run_many(jobs)):
            passed[i] += _passed(run, expected)
        return [None if total is None else (passed[i] / total if mode == "fraction" else float(passed[i] == total))
                for i, total in enumerate(totals)]

    code_tests_reward.sandbox = sandbox
    return code_tests_reward


def _passed(run: Execution, expected: str | None) -> int:
    if expected is None:  # snippets: each reported its own result
        return sum(run.checks)
    return int(run.ok and same_output(run.stdout, expected))
