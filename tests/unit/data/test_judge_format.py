"""The LLM judge's text format: the score and verdict parsers, and templates that load, are checked and fill in
one pass."""

from __future__ import annotations

import pytest

from posttrain.errors import ConfigError
from posttrain.data.judge_format import PAIRWISE_TEMPLATE, POINTWISE_TEMPLATE, fill, load_template, parse_score, parse_verdict


def test_parse_score_and_verdict():
    assert parse_score("Score: 7", 1, 10) == pytest.approx(6 / 9)
    assert parse_score(" 7/10, because...", 1, 10) == pytest.approx(6 / 9)
    assert parse_score("score = 10", 1, 10) == 1.0 and parse_score("The score is 1.", 1, 10) == 0.0
    assert parse_score("Score: 11", 1, 10) is None and parse_score("great answer", 1, 10) is None
    assert parse_score("Score: 2.5", 0, 5) == 0.5
    for text, verdict in [("A", "A"), (" B\n", "B"), ("[[B]]", "B"), ("(A)", "A"), ("A. It is correct", "A"),
                          ("Answer: B", "B"), ("The better response is A", "A"), ("Response B is better", "B"),
                          ("Verdict: [[A]]", "A"), ("", None), ("Neither", None), ("A good question", None), ("AB", None)]:
        assert parse_verdict(text) == verdict, text


def test_templates_load_check_and_fill_in_one_pass(tmp_path):
    assert load_template(None, "pointwise") == POINTWISE_TEMPLATE and load_template(None, "pairwise") == PAIRWISE_TEMPLATE
    good = tmp_path / "pair.txt"
    good.write_text('Compare {"json": 1}\nX: {completion_a}\nY: {completion_b}\n')
    assert fill(load_template(str(good), "pairwise"), completion_a="{completion_b}", completion_b="b") == \
        'Compare {"json": 1}\nX: {completion_b}\nY: b\n'  # other braces stay; inserted text is not expanded again
    bad = tmp_path / "bad.txt"
    bad.write_text("Rate {completion_a}")
    with pytest.raises(ConfigError, match="lacks {completion}"):
        load_template(str(bad), "pointwise")
    with pytest.raises(ConfigError, match="not found"):
        load_template(str(tmp_path / "missing.txt"), "pairwise")


def test_mt_bench_rating_template_and_parse():
    from posttrain.data.judge_format import MT_BENCH_TEMPLATE

    assert load_template("mt_bench", "pointwise") == MT_BENCH_TEMPLATE
    filled = fill(MT_BENCH_TEMPLATE, prompt="Name a prime.", completion="7")
    assert "[Question]\nName a prime.\n\n[The Start of Assistant's Answer]\n7\n[The End" in filled
    # MT-Bench's judge explains first; "[[k]]" wins over any number before it
    assert parse_score("Score 3 would be harsh; 9 is too kind. Rating: [[7]]", 1, 10) == pytest.approx(6 / 9)
    assert parse_score("Rating: [[10]]", 1, 10) == 1.0 and parse_score("Rating: 4", 1, 10) == pytest.approx(3 / 9)
    assert parse_score("7]]", 1, 10) == pytest.approx(6 / 9)  # after a "Rating: [[" prefill
    assert parse_score("Rating: [[11]]", 1, 10) is None and parse_score("[[rating]]", 1, 10) is None
