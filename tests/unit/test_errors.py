"""User errors: one line naming the problem, the file, row and column, or the option it is about."""

import pytest

from posttrain.errors import ConfigError, UserError, naming_option


def test_an_error_inside_naming_option_starts_with_the_option():
    with pytest.raises(ConfigError) as info, naming_option("selector_funcs"):
        raise ConfigError("reward_model path not found: runs/nope/final")
    assert str(info.value) == "selector_funcs: reward_model path not found: runs/nope/final"
    with pytest.raises(UserError) as info, naming_option("judge"):
        raise UserError("judge=pairwise_judge needs model=DIR")  # names it already: left as it is
    assert str(info.value) == "judge=pairwise_judge needs model=DIR"
    with pytest.raises(ValueError), naming_option("judge"):  # not the user's to fix: untouched
        raise ValueError("a bug")
