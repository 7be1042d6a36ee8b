"""Final-answer extraction shared by the benchmark loaders and math_accuracy."""

from posttrain.data.answers import extract_boxed, extract_hash_answer
from posttrain.rewards.math import extract_answer


def test_extract_hash_answer():
    assert extract_hash_answer("3 + 4 = 7\n#### 7") == "7"
    assert extract_hash_answer("#### $1,234.") == "1234"
    assert extract_hash_answer("#### -12.5\nextra") == "-12.5"
    assert extract_hash_answer("no marker") is None and extract_hash_answer("####   ") is None


def test_extract_boxed_lives_once():
    import posttrain.rewards.math as math_reward

    assert math_reward.extract_boxed is extract_boxed  # one helper, re-used by the reward
    assert extract_boxed(r"\boxed{\frac{1}{2}} then \boxed{3}") == "3"


def test_auto_extraction_falls_back_to_the_hash_line():
    assert extract_answer("<answer>5</answer>\n#### 6", "auto") == "5"  # box, then answer tag, then ####
    assert extract_answer("so\n#### 6", "auto") == "6"
    assert extract_answer("so\n#### 6", "boxed") is None
