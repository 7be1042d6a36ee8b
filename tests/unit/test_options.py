"""posttrain.options: the shared option groups (sampling, rewards) that stage configs inherit, and
`restate`, which gives a stage its own default or help text for a group's key."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from posttrain.config import build_config, option
from posttrain.errors import ConfigError
from posttrain.options import (GenerationBatchOptions, MaskableRewardOptions, RewardOptions, SamplingOptions,
                               TopKSamplingOptions, TopPSamplingOptions, restate)


def keys(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_sampling_groups_nest_so_a_stage_gets_only_the_keys_it_reads():
    assert keys(SamplingOptions) == ["temperature", "max_new_tokens"]
    assert keys(TopPSamplingOptions) == ["temperature", "max_new_tokens", "top_p"]
    assert keys(TopKSamplingOptions) == ["temperature", "max_new_tokens", "top_p", "top_k"]
    assert keys(MaskableRewardOptions) == ["reward_funcs", "reward_weights", "reward_workers", "reward_timeout", "reward_errors"]
    assert keys(GenerationBatchOptions) == ["generation_batch_size"]


def test_sampling_kwargs_hold_the_declared_keys_then_the_overrides():
    assert SamplingOptions().sampling_kwargs(seed=3) == {"max_new_tokens": 128, "temperature": 1.0, "seed": 3}
    assert TopKSamplingOptions(top_k=5).sampling_kwargs(max_new_tokens=7) == {
        "max_new_tokens": 7, "temperature": 1.0, "top_p": 1.0, "top_k": 5}

    @dataclass
    class WithStop(SamplingOptions):
        stop: list[str] = option(["\n"], "Stop strings.")

    config = WithStop()
    kwargs = config.sampling_kwargs()
    assert kwargs["stop"] == ["\n"] and kwargs["stop"] is not config.stop  # a copy: the sampler may not touch the config


def test_check_sampling():
    TopPSamplingOptions(temperature=0.0, top_p=0.5).check_sampling()
    for bad in (dict(temperature=-1.0), dict(top_p=0.0), dict(top_p=1.5)):
        with pytest.raises(ConfigError, match=r"temperature must be >= 0 and top_p in \(0, 1\]"):
            TopPSamplingOptions(**bad).check_sampling()


@dataclass
class Stage(MaskableRewardOptions, TopPSamplingOptions):
    max_new_tokens: int = restate(SamplingOptions, "max_new_tokens", default=48)
    temperature: float = restate(SamplingOptions, "temperature", "Sampling temperature (this stage's note).")
    reward_errors: str = restate(MaskableRewardOptions, "reward_errors", default="mask")


def test_restate_changes_only_what_it_is_given():
    fields = {f.name: f for f in dataclasses.fields(Stage)}
    assert Stage().max_new_tokens == 48 and fields["max_new_tokens"].metadata["help"] == "Longest sampled completion in tokens."
    assert Stage().temperature == 1.0 and fields["temperature"].metadata["help"] == "Sampling temperature (this stage's note)."
    assert Stage().reward_errors == "mask" and fields["reward_errors"].metadata["choices"] == ("raise", "mask")
    assert Stage().reward_funcs == ["task"] and Stage().reward_funcs is not Stage().reward_funcs  # list defaults are copied
    with pytest.raises(ConfigError, match="reward_errors"):
        build_config(Stage, {"reward_errors": "ignore"})
    assert keys(Stage) == keys(TopPSamplingOptions) + keys(RewardOptions) + ["reward_errors"]  # restated keys keep their place
