"""sDPO's steps: `shard_rows` cuts the data into N contiguous slices, the K-th for step K."""

from __future__ import annotations

import pytest

from conftest import dpo_config
from posttrain.data.sources import shard_rows
from posttrain.errors import ConfigError


def test_slices_are_contiguous_cover_every_row_once_and_differ_by_at_most_one():
    rows = [{"i": i} for i in range(7)]
    slices = [[r["i"] for r in shard_rows(rows, f"{k}/3")] for k in (1, 2, 3)]
    assert slices == [[0, 1, 2], [3, 4], [5, 6]]  # 7 = 3 + 2 + 2: the first 7 % 3 slices get the extra row
    assert shard_rows(rows, "1/1") == rows


@pytest.mark.parametrize("spec", ["0/2", "3/2", "2", "a/b", "1/0"])
def test_a_bad_spec_says_the_form(spec):
    with pytest.raises(ConfigError, match=r"data_shard must be K/N with 1 <= K <= N"):
        shard_rows([{}] * 4, spec)
    with pytest.raises(ConfigError, match="data_shard"):  # the DPO config checks it before any run
        dpo_config(dataset="x.jsonl", data_shard=spec)


def test_more_slices_than_rows_is_an_error():
    with pytest.raises(ConfigError, match="2 rows cannot be split into 3 slices"):
        shard_rows([{}, {}], "1/3")
