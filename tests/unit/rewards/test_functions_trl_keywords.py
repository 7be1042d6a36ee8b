"""TRL's extra reward-function keywords (GRPOTrainer._calculate_rewards): trainer_state, log_metric, log_extra."""

from __future__ import annotations

from transformers import TrainerState

from posttrain.rewards.functions import RewardFunctions
from posttrain.rewards.trl_keywords import accepted_keywords, trainer_state

SEEN: dict = {}


def plain(prompts, completions, **kwargs):  # TRL's form: every keyword arrives through **kwargs
    SEEN["plain"] = sorted(k for k in kwargs if k in ("trainer_state", "log_metric", "log_extra"))
    kwargs["log_metric"]("mean_length", sum(map(len, completions)) / len(completions))
    kwargs["log_extra"]("first_char", [c[:1] for c in completions])
    return [float(kwargs["trainer_state"].global_step)] * len(completions)


def named_only(prompts, completions, trainer_state, answer):  # names one keyword, no **kwargs: gets only that one
    SEEN["named_only"] = trainer_state
    return [0.0] * len(completions)


def without(prompts, completions, answer):  # posttrain's older form: no **kwargs, no TRL keyword
    return [float(c == a) for c, a in zip(completions, answer)]


async def asynchronous(completions, log_metric, **kwargs):
    log_metric("async_calls", 1.0)
    return [1.0] * len(completions)


def test_keywords_reach_the_functions_that_accept_them():
    assert accepted_keywords(plain, ("trainer_state", "log_metric")) == ("trainer_state", "log_metric")
    assert accepted_keywords(named_only, ("trainer_state", "log_metric")) == ("trainer_state",)
    assert accepted_keywords(without, ("trainer_state",)) == ()
    rewards = RewardFunctions({"plain": plain, "named_only": named_only, "without": without, "asynchronous": asynchronous})
    rewards.trainer_state = trainer_state(7, 100, 0.5)
    result = rewards(["p", "p"], ["ab", "abcd"], {"answer": ["ab", "x"]})
    assert SEEN["plain"] == ["log_extra", "log_metric", "trainer_state"]
    assert isinstance(SEEN["named_only"], TrainerState)
    assert (SEEN["named_only"].global_step, SEEN["named_only"].max_steps, SEEN["named_only"].epoch) == (7, 100, 0.5)
    assert result.per_function["plain"] == [7.0, 7.0] and result.per_function["without"] == [1.0, 0.0]
    assert rewards.pop_logged() == ({"mean_length": [3.0], "async_calls": [1.0]}, {"first_char": ["a", "a"]})
    assert rewards.pop_logged() == ({}, {})  # popped


def test_outside_training_the_state_is_a_fresh_trainer_state():
    """Sampling stages (pairs, rejection, compare) score without a training run: TRL's state before step 1."""
    rewards = RewardFunctions({"named_only": named_only})
    rewards(["p"], ["c"], {"answer": ["c"]})
    assert isinstance(SEEN["named_only"], TrainerState) and SEEN["named_only"].global_step == 0


def test_held_out_scoring_binds_the_keywords_and_drops_what_is_logged():
    rewards = RewardFunctions({"plain": plain, "without": without})
    rewards.trainer_state = trainer_state(3, 10)
    assert rewards.for_evaluation(plain)(prompts=["p"], completions=["abc"]) == [3.0]
    assert rewards.for_evaluation(without) is without  # nothing to bind
    assert rewards.pop_logged() == ({}, {})
