"""The format reward (tag order, missing and repeated tags, strict layout) and the shaping rewards
(DAPO's soft overlong punishment, the repeated-n-gram penalty), on hand-computed values."""

import pytest
import torch
from transformers import AutoTokenizer

from posttrain.errors import ConfigError, UserError
from posttrain.losses.policy import soft_overlong_penalty
from posttrain.rewards import RewardFunctions
from posttrain.rewards.format import completion_text, think_answer_format
from posttrain.rewards.shaping import repeated_ngram_fraction, repetition_penalty, soft_overlong


def fmt(text, **options):
    return think_answer_format(**options)(None, [text])[0]


# ------------------------------------------------------------------ format


@pytest.mark.parametrize("text, expected", [
    ("<think>r</think><answer>a</answer>", 1.0),
    ("  \n<think>r</think>\n<answer>a</answer>\n", 1.0),           # surrounding whitespace
    ("Sure. <think>r</think> so <answer>a</answer> bye", 1.0),     # text around: allowed unless strict
    ("<answer>a</answer><think>r</think>", 0.5),                    # misordered: −0.5
    ("<think>r</think>", 0.5),                                      # answer missing: −0.5
    ("<answer>a</answer>", 0.5),                                    # think missing: −0.5
    ("just text", 0.0),                                             # both missing: −1.0
    ("<think>r</think><answer>a", 0.5),                             # unclosed answer = missing
    ("</think>x<think>", 0.0),                                      # close before open: no block
    ("<think>r<answer>a</answer></think>", 0.5),                    # answer nested in think: misordered
    ("<think>r</think><think>s</think><answer>a</answer>", 0.75),   # think repeated: −0.25
    ("<answer>a</answer><answer>b</answer><think>r</think>", 0.25),  # repeated and misordered
    ("<think>r</think><answer>a</answer><answer>b</answer><think>s</think>", 0.5),  # both repeated
])
def test_format_default_scoring_table(text, expected):
    assert fmt(text) == expected


def test_format_strict_requires_nothing_outside_the_tags():
    assert fmt("<think>r</think>\n\n<answer>a</answer>\n", strict=True) == 1.0
    assert fmt("Sure. <think>r</think><answer>a</answer>", strict=True) == 0.5
    assert fmt("<think>r</think> so <answer>a</answer>", strict=True) == 0.5
    assert fmt("<think>r</think><answer>a</answer><answer>b</answer>", strict=True) == 0.25  # −0.25 − 0.5
    assert fmt("hello <answer>a</answer>", strict=True) == 0.0  # missing think −0.5, outside −0.5


def test_format_options_penalties_floor_and_tags():
    assert fmt("just text", missing_penalty=1.0) == 0.0  # floored at 0
    assert fmt("just text", missing_penalty=1.0, floor=-1.0) == -1.0
    assert fmt("<answer>a</answer><think>r</think>", full=2.0, order_penalty=3.0, floor=-5.0) == -1.0
    assert fmt("<think>r</think><think>r</think><answer>a</answer>", duplicate_penalty=0.1) == pytest.approx(0.9)
    assert fmt("<reasoning>r</reasoning><solution>s</solution>", tags="reasoning,solution") == 1.0
    assert fmt("<solution>s</solution><reasoning>r</reasoning>", tags=["reasoning", "solution"]) == 0.5
    assert fmt("<answer>a</answer>", tags="[answer]") == 1.0
    assert fmt("<reasoning>r</reasoning><answer>a</answer>", tags="reasoning|answer") == 1.0
    assert fmt("<think>r</think><answer>a</answer>", tags="answer,think") == 0.5  # the order given counts


def test_format_conversational_and_bad_options():
    chat = [[{"role": "user", "content": "<think>x</think><answer>y</answer>"}, {"role": "assistant", "content": "no tags"}],
            [{"role": "assistant", "content": "<think>r</think><answer>a</answer>"}]]
    assert think_answer_format()(None, chat) == [0.0, 1.0]
    assert completion_text({"role": "assistant", "content": "x"}) == "x" and completion_text(None) == ""
    with pytest.raises(ConfigError, match="tags must name"):
        think_answer_format(tags="think,,answer")
    with pytest.raises(ConfigError, match="repeat"):
        think_answer_format(tags="answer,answer")
    with pytest.raises(ConfigError, match="full must be a number"):
        think_answer_format(full="one")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) penalty.*missing_penalty=0.5.*floor=0.0"):
        RewardFunctions.resolve(["format:penalty=1"], dataset="x.jsonl")


# ------------------------------------------------------------------ soft overlong (DAPO)


def test_soft_overlong_boundaries_by_hand():
    # L_max = 20, L_cache = 5: no penalty up to 15, a linear ramp to −1 at 20, −1 beyond.
    f = soft_overlong(max_tokens=20, buffer=5)
    lengths = [0, 15, 16, 18, 20, 21, 100]
    values = f(None, ["x"] * len(lengths), completion_ids=[[7] * n for n in lengths])
    assert values == pytest.approx([0.0, 0.0, -0.2, -0.6, -1.0, -1.0, -1.0])
    half = soft_overlong(max_tokens=20, buffer=5, penalty=0.5)(None, ["x"] * 2, completion_ids=[[1] * 16, [1] * 30])
    assert half == pytest.approx([-0.1, -0.5])


def test_soft_overlong_dapo_numbers_and_the_loss_module_agree():
    lengths = [1, 16383, 16384, 16385, 18432, 20479, 20480, 20481, 30000]
    f = soft_overlong(max_tokens=20480, buffer=4096)
    values = f(None, ["x"] * len(lengths), completion_ids=[[0] * n for n in lengths])
    by_hand = [0.0, 0.0, 0.0, -1 / 4096, -0.5, -4095 / 4096, -1.0, -1.0, -1.0]
    assert values == pytest.approx(by_hand, abs=1e-6)
    assert values == soft_overlong_penalty(torch.tensor(lengths), 20480, 4096).tolist()


def test_soft_overlong_default_buffer_and_option_errors():
    f = soft_overlong(max_tokens=20)  # buffer 20 // 5 = 4: the ramp starts after 16
    assert f(None, ["x"] * 2, completion_ids=[[1] * 16, [1] * 17]) == pytest.approx([0.0, -0.25])
    for bad in [dict(max_tokens=0), dict(max_tokens=10, buffer=0), dict(max_tokens=10, buffer=11),
                dict(max_tokens=10, penalty=-1)]:
        with pytest.raises(ConfigError):
            soft_overlong(**bad)
    with pytest.raises(ConfigError, match=r"missing option\(s\) max_tokens"):
        RewardFunctions.resolve(["soft_overlong"], dataset="x.jsonl")


def test_soft_overlong_needs_token_ids_or_a_tokenizer(tiny_gpt2):
    with pytest.raises(UserError, match="tokenizer="):
        soft_overlong(max_tokens=8, buffer=4)(None, ["some text"])
    texts = ["hello", "hello world, this is a longer completion of several tokens"]
    reference = AutoTokenizer.from_pretrained(tiny_gpt2)
    lengths = [len(reference(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert lengths[0] < 6 < lengths[1]
    f = soft_overlong(max_tokens=8, buffer=4, tokenizer=tiny_gpt2)
    assert f(None, texts) == soft_overlong_penalty(torch.tensor(lengths), 8, 4).tolist()


# ------------------------------------------------------------------ repetition


def test_repeated_ngram_fraction_by_hand():
    assert repeated_ngram_fraction("a b a b a b".split(), 2) == pytest.approx(3 / 5)  # ab ba ab ba ab
    assert repeated_ngram_fraction("the cat sat on the cat".split(), 2) == pytest.approx(1 / 5)
    assert repeated_ngram_fraction("a b c a b c a b c".split(), 3) == pytest.approx(4 / 7)
    assert repeated_ngram_fraction(["a", "b"], 3) == 0.0 and repeated_ngram_fraction([], 1) == 0.0


def test_repetition_reward_words_and_tokens():
    f = repetition_penalty()  # trigrams of words, penalty 1
    assert f(None, ["a b c a b c a b c", "all different words here", "", "two words"]) == \
        pytest.approx([-4 / 7, 0.0, 0.0, 0.0])
    assert repetition_penalty(ngram=2, penalty=2.0)(None, ["the cat sat on the cat"]) == pytest.approx([-0.4])
    tokens = repetition_penalty(ngram=1, unit="token")
    assert tokens(None, ["x", "y"], completion_ids=[[5, 5, 5, 5], [1, 2, 3]]) == pytest.approx([-0.75, 0.0])
    with pytest.raises(UserError, match="tokenizer="):
        tokens(None, ["x"])
    with pytest.raises(ConfigError, match="unit must be one of word, token"):
        repetition_penalty(unit="char")
    with pytest.raises(ConfigError, match="ngram"):
        repetition_penalty(ngram=0)


def test_format_options_from_a_command_line_list():
    from posttrain.config import coerce, parse_overrides

    override = parse_overrides(["reward_funcs=[math_accuracy:wrong=-1, format:tags=reasoning|answer:strict=true]"])
    specs = coerce("reward_funcs", override["reward_funcs"], list[str])
    assert specs == ["math_accuracy:wrong=-1", "format:tags=reasoning|answer:strict=true"]
    rewards = RewardFunctions.resolve(specs, dataset="x.jsonl")
    result = rewards(["q"] * 2, ["<reasoning>r</reasoning><answer>4</answer>", "ok <reasoning>r</reasoning><answer>4</answer>"],
                     {"answer": ["4", "4"]})
    assert result.per_function["format"] == [1.0, 0.5] and result.total == [2.0, 1.5]


def test_shaping_rewards_through_the_registry_with_completion_ids():
    rewards = RewardFunctions.resolve(["soft_overlong:max_tokens=20:buffer=5", "repetition:ngram=1:unit=token"],
                                      dataset="x.jsonl", weights=[1.0, 0.5])
    result = rewards(["q", "q"], ["a", "b"], {}, completion_ids=[[1] * 18, [1, 2, 3, 4]])
    assert result.per_function["soft_overlong"] == pytest.approx([-0.6, 0.0])
    assert result.per_function["repetition"] == pytest.approx([-17 / 18, 0.0])
    assert result.total == pytest.approx([-0.6 - 0.5 * 17 / 18, 0.0])
