"""online.options: the reward-side options every online stage shares (monitor_funcs, reward_timeout)."""

import pytest

from posttrain.algorithms.grpo import GRPOConfig
from posttrain.algorithms.ppo import PPOConfig
from posttrain.config import build_config
from posttrain.errors import ConfigError


@pytest.mark.parametrize("config_class", [GRPOConfig, PPOConfig])
def test_monitor_funcs_and_reward_timeout_defaults_and_validation(config_class):
    config = build_config(config_class, {})
    assert config.monitor_funcs == [] and config.reward_timeout == 300.0
    assert build_config(config_class, {"monitor_funcs": ["task::format"], "reward_timeout": 0}).reward_timeout == 0
    for bad in (-1, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="reward_timeout must be a number of seconds >= 0"):
            build_config(config_class, {"reward_timeout": bad})
