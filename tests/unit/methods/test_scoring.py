"""The eval stage's scorers: a built-in reward spec, math_accuracy by default for benchmark rows, none needed with a judge."""

import pytest

from posttrain.errors import UserError
from posttrain.methods.scoring import resolve_scorers


def test_builtin_reward_spec_and_benchmark_default():
    integer = resolve_scorers("math_accuracy:mode=integer", "prompts.jsonl")["score"]
    assert integer(["q"], ["\\boxed{1,234}", "\\boxed{12.0}"], answer=["1234", "12"]) == [1.0, 0.0]
    by_default = resolve_scorers(None, "gsm8k.jsonl", [{"prompt": "q", "answer": "4", "benchmark": "gsm8k"}])["score"]
    assert by_default(["q"], ["#### 4"], answer=["4"]) == [1.0]
    assert resolve_scorers(None, "prompts.jsonl", [{"prompt": "q"}], required=False) == {}
    with pytest.raises(UserError, match="or judge=... for an LLM judge"):
        resolve_scorers(None, "prompts.jsonl", [{"prompt": "q"}])
