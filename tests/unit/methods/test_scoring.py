"""The eval stage's scorers are reward specs: built-ins with options, several at once, task scorers, math_accuracy by
default for benchmark rows, none needed with a judge; a bad spec is one ConfigError naming `scorer`."""

import pytest

from posttrain.errors import ConfigError, UserError
from posttrain.methods.scoring import resolve_scorers
from posttrain.rewards.functions import RewardFunctions


def test_builtin_reward_spec_and_benchmark_default():
    integer = resolve_scorers("math_accuracy:mode=integer", "prompts.jsonl")["math_accuracy"]
    assert integer(["q"], ["\\boxed{1,234}", "\\boxed{12.0}"], answer=["1234", "12"]) == [1.0, 0.0]
    by_default = resolve_scorers(None, "gsm8k.jsonl", [{"prompt": "q", "answer": "4", "benchmark": "gsm8k"}])
    assert list(by_default) == ["math_accuracy"] and by_default["math_accuracy"](["q"], ["#### 4"], answer=["4"]) == [1.0]
    assert resolve_scorers(None, "prompts.jsonl", [{"prompt": "q"}], required=False) == {}
    with pytest.raises(UserError, match="or judge=... for an LLM judge"):
        resolve_scorers(None, "prompts.jsonl", [{"prompt": "q"}])


def test_several_specs_in_order_and_the_tasks_scorers():
    assert list(resolve_scorers(["math_accuracy:wrong=-1", "format", "task::format"], "task:arithmetic")) == [
        "math_accuracy", "format", "format_2"]  # a repeated name gets the function's position
    assert list(resolve_scorers(None, "task:arithmetic:test:5")) == ["accuracy", "format"]  # the headline first
    assert list(resolve_scorers(["task:sentiment"], "prompts.jsonl")) == ["gold"]


@pytest.mark.parametrize("spec,message", [
    ("nosuch", "scorer: unknown reward 'nosuch' in scorer; give a built-in (cascade, code_tests, format, judge, math_accuracy"),
    ("format:bogus=1", "scorer: reward 'format': unknown option(s) bogus; its options are: tags="),
    ("task::nosuch", "scorer: task arithmetic has no scorer 'nosuch'; it has accuracy, format"),
])
def test_a_bad_spec_is_one_config_error_naming_scorer(spec, message):
    with pytest.raises(ConfigError) as raised:
        resolve_scorers([spec], "task:arithmetic")
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_scorers_are_called_as_rewards_and_their_errors_say_scoring_without_a_training_hint():
    def raises(prompts, completions, **columns):
        raise RuntimeError("boom")

    def nan_for_long(completions, answer, completion_ids, **columns):  # TRL's keyword convention, ids included
        return [float("nan") if len(ids) > 2 else float(c == a) for c, a, ids in zip(completions, answer, completion_ids)]

    scoring = RewardFunctions({"nan_for_long": nan_for_long}, label="scoring")
    assert scoring(["p", "p"], ["4", "5"], {"answer": ["4", "4"]}, [[1], [2]]).per_function == {"nan_for_long": [1.0, 0.0]}
    with pytest.raises(UserError) as raised:
        scoring(["p"], ["4"], {"answer": ["4"]}, [[1, 2, 3]])
    assert str(raised.value) == ("scoring function 'nan_for_long' returned nan for completion 0; "
                                 "values must be finite numbers or None")
    with pytest.raises(UserError) as raised:
        RewardFunctions({"raises": raises}, label="scoring")(["p"], ["4"], {})
    assert str(raised.value) == "scoring function 'raises' raised RuntimeError: boom"
