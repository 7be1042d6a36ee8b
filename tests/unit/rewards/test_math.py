"""The math_accuracy reward with the real math-verify: answer extraction, equivalence edge cases,
conventions (1/0, ±1, missing), integer and exact modes, worker threads, registry and eq. 39 totals."""

import threading

import pytest

from posttrain.errors import ConfigError, UserError
from posttrain.rewards import RewardFunctions
from posttrain.rewards.math import (VerifierProcess, check_answer, extract_answer, extract_boxed, math_accuracy,
                                    parse_integer)


def score(completion, gold, **options):
    return math_accuracy(**options)(["q"], [completion], answer=[gold])[0]


# ------------------------------------------------------------------ extraction


def test_extract_boxed_keeps_nested_braces_and_takes_the_last():
    assert extract_boxed(r"first \boxed{1}, finally \boxed{\frac{3}{4}}.") == r"\frac{3}{4}"
    assert extract_boxed(r"\fbox{x^{2}}") == "x^{2}"
    assert extract_boxed(r"\boxed {\{1,2\}}") == r"\{1,2\}"  # escaped braces do not close the box
    assert extract_boxed(r"\boxed{\frac{1}{2}") is None  # never closes
    assert extract_boxed("no box") is None


def test_extract_modes():
    text = r"<think>maybe \boxed{5}</think><answer>7</answer>"
    assert extract_answer(text, "auto") == "5"  # a box wins over the answer tag
    assert extract_answer(text, "answer_tag") == "7"
    assert extract_answer("<answer>1</answer><answer> 2 </answer>", "auto") == " 2 "
    assert extract_answer("<answer>  </answer>", "auto") is None  # blank = missing
    assert extract_answer("the answer is 4", "boxed") is None
    assert extract_answer("the answer is 4", "none") == "the answer is 4"


def test_parse_integer():
    assert [parse_integer(s) for s in ["42", "-7", "+3", "1,234", "1{,}000", "1\\,000", "$12$", " 5 "]] == \
        [42, -7, 3, 1234, 1000, 1000, 12, 5]
    assert [parse_integer(s) for s in ["1.5", "12,34", "x", "", "1 000"]] == [None] * 5
    assert parse_integer(3.0) == 3 and parse_integer(2.5) is None and parse_integer(True) is None


# ------------------------------------------------------------------ math-verify equivalences


@pytest.mark.parametrize("answer, gold", [
    (r"\frac{1}{2}", "0.5"), ("0.5", r"\frac{1}{2}"), ("1/2", r"\frac{1}{2}"), (r"\dfrac12", "1/2"),
    (r"\{2,1\}", r"\{1,2\}"), (r"\{1,2,3,4\}", r"\{1,3\} \cup \{2,4\}"),
    ("sqrt(2)", r"\sqrt{2}"), (r"\sqrt{2}", r"\sqrt{2}"), (r"\pi \cdot 2", r"2\pi"), ("6.283185307", r"2\pi"),
    (r"\frac{3}{4}", "3/4"), ("-3", "-3"), (r"-\frac{3}{4}", "-0.75"),
    ("1,000,000", "1000000"), ("1{,}000", "1000"), ("[1,2)", "[1,2)"), ("x^2 + 2x + 1", "(x+1)^2"),
])
def test_equivalent_answers_score_correct(answer, gold):
    assert score(rf"so the answer is \boxed{{{answer}}}", gold) == 1.0


@pytest.mark.parametrize("answer, gold", [
    ("3", "-3"), ("0.4", r"\frac{1}{2}"), (r"\{1,2,3\}", r"\{1,2\}"), ("(1,2)", "[1,2]"), ("2", r"2\pi"),
    (r"\sqrt{3}", r"\sqrt{2}"), ("1,001", "1000"),
])
def test_different_answers_score_wrong(answer, gold):
    assert score(rf"\boxed{{{answer}}}", gold) == 0.0


def test_nested_boxed_fraction_in_the_answer_tag_and_gold_with_delimiters():
    assert score(r"<answer>\boxed{\frac{3}{4}}</answer>", "0.75") == 1.0
    assert score("<answer>0.75</answer>", r"$\frac{3}{4}$") == 1.0  # gold with $ goes in as is
    assert score("<answer>0.75</answer>", r"The solution is ... so \boxed{\frac34}.") == 1.0  # a TRL solution


def test_conventions_and_missing_answers():
    batch = [r"\boxed{4}", r"\boxed{5}", "I don't know", r"<answer></answer>"]
    golds = ["4"] * 4
    assert math_accuracy()(None, batch, answer=golds) == [1.0, 0.0, 0.0, 0.0]
    assert math_accuracy(wrong=-1)(None, batch, answer=golds) == [1.0, -1.0, -1.0, -1.0]  # ±1: missing = wrong
    assert math_accuracy(wrong=-1, missing=-0.5)(None, batch, answer=golds) == [1.0, -1.0, -0.5, -0.5]
    assert math_accuracy(correct=2, missing="null")(None, batch, answer=golds) == [2.0, 0.0, 0.0, 0.0]


def test_missing_or_unparseable_gold_gives_none_and_gold_lists_are_any_of():
    f = math_accuracy()
    assert f(None, [r"\boxed{1}"] * 4, answer=[None, "", float("nan"), "   "]) == [None] * 4
    assert f(None, [r"\boxed{2}", r"\boxed{3}"], answer=[["1", "2"], ["1", "2"]]) == [1.0, 0.0]


def test_extract_none_lets_math_verify_find_the_answer():
    f = math_accuracy(extract="none")
    assert f(None, ["Adding them, the final answer is $\\frac{1}{2}$.", "It is 7."], answer=["0.5", "8"]) == [1.0, 0.0]


def test_conversational_completions_read_the_last_assistant_message():
    completions = [
        [{"role": "assistant", "content": r"\boxed{12}"}],
        [{"role": "assistant", "content": r"\boxed{12}"}, {"role": "user", "content": "sure?"},
         {"role": "assistant", "content": r"yes: \boxed{13}"}],
        [{"role": "assistant", "content": [{"type": "text", "text": r"\boxed{12}"}]}],
    ]
    assert math_accuracy()(None, completions, answer=["12"] * 3) == [1.0, 0.0, 1.0]


def test_gold_column_option_and_trl_solution_fallback():
    assert math_accuracy()(None, [r"\boxed{3}"], solution=["3"]) == [1.0]
    assert math_accuracy(column="target")(None, [r"\boxed{3}"], target=["4"], answer=["3"]) == [0.0]
    with pytest.raises(UserError, match="'answer' \\(or solution\\).*the data has: question"):
        math_accuracy()(None, [r"\boxed{3}"], question=["?"])


# ------------------------------------------------------------------ integer and exact modes


def test_integer_mode_dapo_convention():
    f = math_accuracy(mode="integer", wrong=-1)
    batch = [r"\boxed{1,234}", "<answer>-5</answer>", r"\boxed{1234.5}", r"\boxed{\frac{2468}{2}}", "none", r"\boxed{1235}"]
    assert f(None, batch, answer=[1234, "-5", "1234", "1234", "1", "1234"]) == [1.0, 1.0, -1.0, -1.0, -1.0, -1.0]
    with pytest.raises(UserError, match="not an integer.*mode=verify"):
        f(None, [r"\boxed{1}"], answer=["1/2"])


def test_exact_mode_strips_surrounding_whitespace_only():
    f = math_accuracy(mode="exact")
    batch = [r"\boxed{ \frac{1}{2} }", r"\boxed{0.5}", r"\boxed{\frac {1}{2}}"]
    assert f(None, batch, answer=[r"\frac{1}{2}"] * 3) == [1.0, 0.0, 0.0]


# ------------------------------------------------------------------ threads and timeouts


def test_reward_works_from_a_worker_thread():
    f = math_accuracy(wrong=-1)
    batch, golds = [r"\boxed{\frac{1}{2}}", r"\boxed{0.4}", "nothing"], ["0.5"] * 3
    results = []
    thread = threading.Thread(target=lambda: results.append(f(None, batch, answer=golds)))
    thread.start()
    thread.join(60)
    assert results == [[1.0, -1.0, -1.0]]
    thread = threading.Thread(target=lambda: results.append(math_accuracy(timeout=0)(None, batch, answer=golds)))
    thread.start()
    thread.join(60)
    assert results[1] == [1.0, 0.0, 0.0]  # timeout=0: in-process, no signals


def test_verifier_process_kills_a_hanging_check_and_recovers(monkeypatch):
    # 9^{9^{9^{9}}} runs for minutes without a timeout; the child's own 1 s timeout stops it in the
    # main-thread-of-the-child, and the parent's deadline is the backstop behind it.
    verifier = VerifierProcess()
    try:
        assert verifier.check(["3"], "3", True, 1) == "correct"
        assert verifier.check(["3"], "9^{9^{9^{9}}}", True, 1) == "wrong"
        monkeypatch.setattr(VerifierProcess, "deadline", staticmethod(lambda timeout, n: 0.5))
        assert verifier.check(["3"], "9^{9^{9^{9}}}", True, 30) == "wrong"  # killed at the deadline
        assert verifier._proc is None
        assert verifier.check(["1/2"], "0.5", True, 1) == "correct"  # a fresh child
    finally:
        verifier.close()


def test_check_answer_verdicts_in_process():
    assert check_answer(["4"], "4") == "correct"
    assert check_answer(["4"], "5") == "wrong"
    assert check_answer(["4"], None) == "missing"
    assert check_answer([""], "4") == "no_gold"


# ------------------------------------------------------------------ registry, eq. 39


def test_resolve_weighted_total_is_r_acc_plus_half_r_fmt():
    rewards = RewardFunctions.resolve(["math_accuracy:wrong=-1", "format"], dataset="x.jsonl", weights=[1.0, 0.5])
    assert list(rewards.functions) == ["math_accuracy", "format"]
    completions = [
        "<think>2+2</think><answer>4</answer>",     # right, formatted:      1 + 0.5·1
        "<think>2+2</think><answer>5</answer>",     # wrong, formatted:     −1 + 0.5·1
        "<answer>4</answer>",                       # right, no think:       1 + 0.5·0.5
        "4",                                        # missing, no tags:     −1 + 0.5·0
        "<answer>4</answer><think>hm</think>",      # right, misordered:     1 + 0.5·0.5
    ]
    result = rewards(["q"] * 5, completions, {"answer": ["4"] * 5})
    assert result.per_function["math_accuracy"] == [1.0, -1.0, 1.0, -1.0, 1.0]
    assert result.per_function["format"] == [1.0, 1.0, 0.5, 0.0, 0.5]
    assert result.total == [1.5, -0.5, 1.25, -1.0, 1.25]


def test_misspelled_or_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match=r"unknown option\(s\) wrnog.*mode='verify'.*wrong=0.0.*missing=None"):
        RewardFunctions.resolve(["math_accuracy:wrnog=-1"], dataset="x.jsonl")
    with pytest.raises(ConfigError, match="mode must be one of verify, integer, exact"):
        RewardFunctions.resolve(["math_accuracy:mode=fuzzy"], dataset="x.jsonl")
    with pytest.raises(ConfigError, match="wrong must be a number"):
        math_accuracy(wrong="minus one")
