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
    config = SimpleNamespace(seed=0, num_generations=2, num_minibatches=1, num_iterations=1, batch_size=3)
    source = OnlineSource(algorithm=SimpleNamespace(whole_groups=whole_groups), rows=[], tokenizer=None, config=config)
    assert source._plan(10) == expected
    config.num_minibatches, config.batch_size = 2, 16  # 5 groups over 2 steps: 3 groups, then 2; never half a group
    plan = source._plan(10)
    assert sorted(len(step[0]) for step in plan) == ([4, 6] if whole_groups else [5, 5])
