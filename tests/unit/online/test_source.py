"""online.source.OnlineSource: a data set none of whose prompts leaves room to generate is a one-line
DataError before any work (each prompt that does not fit is otherwise skipped and counted)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from posttrain.errors import DataError
from posttrain.online.source import OnlineSource
from tiny_tokenizers import plain_tokenizer


def test_no_prompt_that_fits_is_an_error_naming_the_limit():
    config = SimpleNamespace(dataset="long.jsonl", max_length=16, max_new_tokens=8, difficulty_column=None)
    rows = [{"prompt": "word " * 20}, {"prompt": "word " * 30}]
    source = OnlineSource(algorithm=None, rows=rows, tokenizer=plain_tokenizer(), config=config)
    with pytest.raises(DataError, match=r"^long.jsonl: every prompt is too long to generate from \(the shortest of 2 has \d+ "
                                        r"tokens\): a prompt may have at most max_length - max_new_tokens = 8 tokens; raise "
                                        r"max_length, lower max_new_tokens or shorten the prompts$"):
        source.check_some_prompt_fits()
    fits = OnlineSource(algorithm=None, rows=[*rows, {"prompt": "hi"}], tokenizer=plain_tokenizer(), config=config)
    fits.check_some_prompt_fits()  # one short prompt is enough: the long ones are skipped and counted
    assert fits._prompt_ids(0) is None and fits._prompt_ids(2) is not None


@pytest.mark.parametrize("whole_groups, expected", [
    # 5 groups of G = 2 (10 samples), 1 minibatch, batch_size 3: plain chunks of 3 split groups ...
    (False, [[[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]]),
    # ... a pair loss (online DPO) gets micro-batches rounded up to whole groups: 4 samples
    (True, [[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]]),
])
def test_the_plan_keeps_a_prompts_samples_together_when_the_loss_needs_them(whole_groups, expected):
    config = SimpleNamespace(seed=0, num_generations=2, num_minibatches=1, num_iterations=1, batch_size=3, difficulty_column=None, pass_function=None)
    source = OnlineSource(algorithm=SimpleNamespace(whole_groups=whole_groups), rows=[], tokenizer=None, config=config)
    assert source._plan(10, 0) == expected
    config.num_minibatches, config.batch_size = 2, 16  # 5 groups over 2 steps: 3 groups, then 2; never half a group
    plan = source._plan(10, 0)
    assert sorted(len(step[0]) for step in plan) == ([4, 6] if whole_groups else [5, 5])


def test_the_curriculum_reads_the_pass_functions_values_group_by_group():
    """pass_function picks that reward function's values (per sample, group-major) out of the round's
    rewards; unset, the total rewards; a name that is not a reward function is a one-line ConfigError."""
    from posttrain.errors import ConfigError
    from posttrain.online.experience import Sample

    groups = [[Sample([1], [2], [0.0], g, reward=r) for r in rewards] for g, rewards in enumerate([[1.5, 0.5], [2.0, 1.0]])]
    scored = SimpleNamespace(groups=groups, rewards=SimpleNamespace(per_function={"accuracy": [1.0, 0.0, 1.0, None], "format": [0.5] * 4}))
    source = lambda name: OnlineSource(None, [], None, SimpleNamespace(difficulty_column=None, pass_function=name))  # noqa: E731
    assert source("accuracy")._pass_values(scored) == [[1.0, 0.0], [1.0, None]]
    assert source(None)._pass_values(scored) == [[1.5, 0.5], [2.0, 1.0]]
    with pytest.raises(ConfigError, match=r"^pass_function=acc is not one of the reward functions \(accuracy, format\)"):
        source("acc")._pass_values(scored)
