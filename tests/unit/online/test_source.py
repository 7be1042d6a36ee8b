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
