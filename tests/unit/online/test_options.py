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


def test_ray_options_are_read_only_with_ray_and_validated():
    """ray=true (rollout/ray_backend.py): its options are unread without it, and bad values are one line."""
    from posttrain.online.options import RAY_KEYS, reject_unread

    plain = build_config(GRPOConfig, {})
    assert set(RAY_KEYS) <= set(plain.unread())
    with pytest.raises(ConfigError, match="ray_workers.*ray=true"):
        reject_unread(build_config(GRPOConfig, {"ray_workers": 4}))
    ray = build_config(GRPOConfig, {"ray": True, "ray_workers": 4, "ray_address": "10.0.0.1:6379", "ray_placement": "disaggregate",
                                    "ray_learners": 2})
    assert not set(RAY_KEYS) & set(ray.unread())
    assert {"ray_learner_cpus", "ray_learner_gpus"} <= set(build_config(GRPOConfig, {"ray": True}).unread())
    assert build_config(GRPOConfig, {"ray": True, "ray_address": "auto"}).ray_address == "auto"
    for values, message in [({"ray_workers": 0}, "ray_workers must be >= 1"), ({"ray_worker_cpus": 0}, "ray_worker_cpus > 0"),
                            ({"ray_address": "headnode"}, "ray_address must be HOST:PORT"),
                            ({"ray_address": "headnode:port"}, "ray_address must be HOST:PORT"),
                            ({"ray_timeout": 0}, "ray_timeout must be"), ({"ray_learners": -1}, "ray_learners must be >= 0"),
                            ({"ray_learners": 2, "ray_learner_cpus": 0}, "ray_learner_cpus > 0"), ({"async_rollout": True}, "drop async_rollout"),
                            ({"rollout_backend": "vllm", "vllm_mode": "server"}, "vllm_mode=colocate")]:
        with pytest.raises(ConfigError, match=message):
            build_config(GRPOConfig, {"ray": True, **values})


def test_ray_learners_refuse_torchrun_but_not_their_own_processes(monkeypatch):
    """ray_learners starts the learner processes itself: under torchrun it is refused, in a learner that
    Ray started (its torchrun variables came from Ray) it is what that learner runs."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="without torchrun"):
        build_config(GRPOConfig, {"ray": True, "ray_learners": 2})
    monkeypatch.setenv("POSTTRAIN_RAY_LEARNER", "1")
    assert build_config(GRPOConfig, {"ray": True, "ray_learners": 2}).ray_learners == 2
