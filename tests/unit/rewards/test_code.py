"""The `code_tests` reward on real programs in the real sandbox: scores, test formats, code extraction,
modes, parallel runs and option errors."""

from __future__ import annotations

import json

import pytest

from posttrain.errors import ConfigError, DataError
from posttrain.rewards import registry
from posttrain.rewards.code import code_tests, extract_code, parse_tests, same_output
from posttrain.rewards.functions import RewardFunctions
from posttrain.rewards.sandbox import Limits, Sandbox

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"]
STDIO_SUM = [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4", "output": "6"}, {"input": "0 0\n", "output": "0"}]


@pytest.fixture(scope="module")
def reward():
    return code_tests(timeout=5, memory_mb=512, workers=2)


def fenced(code: str, prose: str = "Here is my solution.") -> str:
    return f"{prose}\n\n```python\n{code}\n```\nIt adds the numbers."


def test_correct_partial_and_broken_code_score_the_fraction_of_tests_passed(reward):
    completions = [fenced("def add(a, b):\n    return a + b"),
                   fenced("def add(a, b):\n    return a + b if a >= 0 else 7"),   # fails add(-1, 1) only
                   fenced("def add(a, b):\n    return 3"),                        # passes add(1, 2) only
                   fenced("def add(a, b)\n    return a + b"),                     # syntax error
                   "I don't know."]
    scores = reward(prompts=["p"] * 5, completions=completions, tests=[ADD_TESTS] * 5)
    assert scores == [1.0, 2 / 3, 1 / 3, 0.0, 0.0]


def test_mode_all_gives_one_only_when_every_test_passes():
    reward = code_tests(mode="all", timeout=5, workers=2)
    completions = [fenced("def add(a, b):\n    return a + b"), fenced("def add(a, b):\n    return 3")]
    assert reward(prompts=["p", "p"], completions=completions, tests=[ADD_TESTS] * 2) == [1.0, 0.0]


def test_stdin_stdout_cases_compare_stripped_output(reward):
    right = "a, b = map(int, input().split())\nprint(a + b)"
    trailing = "a, b = map(int, input().split())\nprint(str(a + b) + '   ')\nprint()"
    positive_only = "a, b = map(int, input().split())\nprint(a + b if b >= 0 else 0)"
    crashes_after_printing = "a, b = map(int, input().split())\nprint(a + b)\nraise SystemExit(3)"
    scores = reward(prompts=[""] * 4, completions=[fenced(c) for c in (right, trailing, positive_only, crashes_after_printing)],
                    tests=[STDIO_SUM] * 4)
    assert scores == [1.0, 1.0, 2 / 3, 0.0]


def test_other_test_formats_apps_style_json_encoded_and_a_test_code_string(reward):
    apps = {"inputs": ["2 3\n", "5 5\n"], "outputs": ["5\n", "11\n"]}
    check_code = "def check(f):\n    assert f(2, 3) == 5\n    assert f(0, 0) == 0\ncheck(add)"
    program = "a, b = map(int, input().split())\nprint(a + b)"
    completions = [fenced(program), fenced(program), fenced("def add(a, b):\n    return a + b"),
                   fenced("def add(a, b):\n    return a * b + 1")]
    tests = [apps, json.dumps(STDIO_SUM), check_code, check_code]
    assert reward(prompts=[""] * 4, completions=completions, tests=tests) == [0.5, 1.0, 1.0, 0.0]
    assert parse_tests(json.dumps(ADD_TESTS)) == ("checks", ADD_TESTS)
    assert parse_tests({"input": "1", "output": "2"}) == ("stdio", [("1", "2")])


def test_rows_without_tests_get_none_and_a_missing_column_is_a_clear_error(reward):
    completions = [fenced("def add(a, b):\n    return a + b")] * 3
    assert reward(prompts=[""] * 3, completions=completions, tests=[None, ADD_TESTS, []]) == [None, 1.0, None]
    with pytest.raises(DataError, match="column 'tests'.*answer"):
        reward(prompts=[""], completions=completions[:1], answer=["3"])
    with pytest.raises(DataError, match="completion 0: expected every test"):
        reward(prompts=[""], completions=completions[:1], tests=[["assert True", {"input": "", "output": ""}]])
    with pytest.raises(DataError, match="2 inputs but 1 outputs"):
        reward(prompts=[""], completions=completions[:1], tests=[{"inputs": ["1", "2"], "outputs": ["1"]}])


def test_conversational_completions_use_the_last_assistant_message(reward):
    completion = [{"role": "assistant", "content": "Thinking...\n```\ndef add(a, b):\n    return a - b\n```"},
                  {"role": "user", "content": "fix it"},
                  {"role": "assistant", "content": fenced("def add(a, b):\n    return a + b")}]
    prompt = [{"role": "user", "content": "write add"}]
    assert reward(prompts=[prompt], completions=[completion], tests=[ADD_TESTS]) == [1.0]


def test_code_extraction_takes_the_last_python_block():
    assert extract_code("x\n```python\nfirst()\n```\ntext\n```py\nsecond()\n```\n") == "second()\n"
    assert extract_code("```\nplain()\n```") == "plain()\n"
    assert extract_code("```python\ncode()\n```\nand a shell line:\n```bash\nls\n```") == "code()\n"
    assert extract_code("no fences: print(1)") == "no fences: print(1)"
    assert extract_code("```python\ncut_at_max_len(") == "cut_at_max_len("  # an unclosed final fence
    assert extract_code("```python3 title\nx = 1\n```") == "x = 1\n"


def test_output_comparison_ignores_surrounding_and_trailing_whitespace_only():
    assert same_output("3  \n4\n\n", "3\n4")
    assert same_output("a\r\nb\r\n", "a\nb")
    assert not same_output("3 4", "3  4") and not same_output("34", "3\n4")


def test_many_programs_run_in_parallel_and_all_score_right():
    # Each program reports when it ran; overlapping intervals show the pool ran them side by side.
    sandbox = Sandbox(Limits(timeout=10), workers=4)
    program = "import time\nstart = time.time()\ntime.sleep(0.3)\nprint(start, time.time(), {i} * {i})"
    runs = sandbox.run_many([(program.format(i=i), "", None) for i in range(16)])
    assert [int(r.stdout.split()[2]) for r in runs] == [i * i for i in range(16)]
    intervals = sorted(tuple(map(float, r.stdout.split()[:2])) for r in runs)
    assert any(later_start < end for (_, end), (later_start, _) in zip(intervals, intervals[1:]))


def test_registry_builds_it_from_a_spec_and_reward_functions_call_it(tmp_path):
    name, fn = registry.build("code_tests:timeout=5:mode=all:workers=2")
    assert name == "code_tests" and fn.sandbox.limits.timeout == 5.0 and fn.sandbox.workers == 2
    rewards = RewardFunctions.resolve(["code_tests:mode=all"], dataset=str(tmp_path / "data.jsonl"))
    result = rewards(["p", "p"], [fenced("def add(a, b):\n    return a + b"), "nothing"], {"tests": [ADD_TESTS, ADD_TESTS]})
    assert result.total == [1.0, 0.0]


@pytest.mark.parametrize("spec, message", [
    ("code_tests:mode=most", "mode must be one of fraction, all"),
    ("code_tests:timeout=0", "timeout must be a positive number"),
    ("code_tests:timeout=soon", "timeout must be a positive number"),
    ("code_tests:workers=0", "workers must be a positive integer"),
    ("code_tests:max_processes=2.5", "max_processes must be a positive integer"),
    ("code_tests:memory_mb=16", "too small for the Python interpreter"),
    ("code_tests:language=cpp", "language 'cpp' is not supported"),
    ("code_tests:tests_column=", "tests_column must be a column name"),
    ("code_tests:timeuot=5", "unknown option"),
    ("code_tests:python=/no/such/python", "is not an executable"),
])
def test_bad_options_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        registry.build(spec)
