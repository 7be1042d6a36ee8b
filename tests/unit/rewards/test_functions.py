"""RewardFunctions: TRL's calling convention (by keyword), weighted sums, concurrency, the registry."""

import asyncio
import threading

import pytest

from posttrain.errors import ConfigError, UserError
from posttrain.rewards import RewardFunctions
from posttrain.rewards.registry import BUILTIN, build, parse_spec

PROMPTS = ["What is 1+1?", "What is 2+2?"]
COMPLETIONS = [[{"role": "assistant", "content": "<think>\nadd\n</think>\n\\boxed{2}"}],
               [{"role": "assistant", "content": "no tags, \\boxed{5}"}]]


def test_trl_reward_functions_work_unchanged():
    # TRL's own functions: keyword-only use of `completions`, a `solution` column, `completion_ids`.
    from trl.rewards import accuracy_reward, get_soft_overlong_punishment, think_format_reward

    rewards = RewardFunctions({"accuracy": accuracy_reward, "format": think_format_reward,
                               "overlong": get_soft_overlong_punishment(max_completion_len=10, soft_punish_cache=4)})
    result = rewards(PROMPTS, COMPLETIONS, {"solution": ["2", "4"]}, completion_ids=[[1] * 5, [1] * 8])
    assert result.per_function == {"accuracy": [1.0, 0.0], "format": [1.0, 0.0], "overlong": [0.0, -0.5]}
    assert result.total == [2.0, -0.5]


def test_weighted_sum_skips_none_and_masks_all_none():
    def first(completions, **kwargs):
        return [1.0, None]

    def second(prompts, completions, **kwargs):
        return [0.5, None]

    result = RewardFunctions({"first": first, "second": second}, weights=[1.0, 0.2])(PROMPTS, COMPLETIONS, {})
    assert result.total == [pytest.approx(1.1), None] and result.num_masked == 1


def test_sync_functions_run_concurrently_in_the_pool():
    # Each waits for the other: this only completes if both run at once.
    barrier = threading.Barrier(2, timeout=10)

    def make(value):
        def reward(completions, **kwargs):
            barrier.wait()
            return [value] * len(completions)
        return reward

    result = RewardFunctions({"a": make(1.0), "b": make(2.0)}, workers=2)(PROMPTS, COMPLETIONS, {})
    assert result.total == [3.0, 3.0]


def test_async_functions_run_together_on_one_loop():
    events = {}

    def make(mine, other, value):
        async def reward(completions, **kwargs):
            events.setdefault(mine, asyncio.Event()).set()
            await asyncio.wait_for(events.setdefault(other, asyncio.Event()).wait(), timeout=10)
            return [value] * len(completions)
        return reward

    def plain(completions, **kwargs):
        return [0.25] * len(completions)

    functions = {"a": make("a", "b", 1.0), "b": make("b", "a", 2.0), "plain": plain}
    result = RewardFunctions(functions)(PROMPTS, COMPLETIONS, {})
    assert result.per_function == {"a": [1.0, 1.0], "b": [2.0, 2.0], "plain": [0.25, 0.25]}


def test_a_raising_async_function_is_named_or_masked():
    async def broken(completions, **kwargs):
        raise RuntimeError("judge offline")

    with pytest.raises(UserError, match="reward function 'broken' raised RuntimeError: judge offline"):
        RewardFunctions({"broken": broken})(PROMPTS, COMPLETIONS, {})
    result = RewardFunctions({"broken": broken}, on_error="mask")(PROMPTS, COMPLETIONS, {})
    assert result.total == [None, None] and result.failures == {"broken": 2}


def test_registry_specs_parse_and_validate():
    assert parse_spec("math_accuracy:wrong=-1:mode=integer:path=runs/rm/final") == (
        "math_accuracy", {"wrong": -1, "mode": "integer", "path": "runs/rm/final"})
    with pytest.raises(ConfigError, match="not key=value"):
        parse_spec("format:strict")
    with pytest.raises(ConfigError, match="unknown reward 'nope'"):
        build("nope")
    assert {"math_accuracy", "format", "code_tests", "reward_model", "judge", "milestone"} <= set(BUILTIN)


def test_resolve_mixes_task_builtin_and_module_specs():
    rewards = RewardFunctions.resolve(["task:arithmetic:accuracy", "trl.rewards:think_format_reward"], dataset="x.jsonl")
    assert list(rewards.functions) == ["accuracy", "think_format_reward"]
    with pytest.raises(ConfigError, match="reward_workers must be >= 1"):
        RewardFunctions({"f": lambda **_: []}, workers=0)


def test_task_specs_name_all_or_one_scorer_of_the_datasets_task_or_a_named_one():
    def names(spec, dataset="task:arithmetic:test:5"):
        return list(RewardFunctions.resolve([spec], dataset).functions)

    assert names("task") == names("task:arithmetic") == ["accuracy", "format"]
    assert names("task::accuracy") == names("task:arithmetic:accuracy") == ["accuracy"]
    assert names("task::verdict_accuracy", "task:sentiment_judge") == ["verdict_accuracy"]
    with pytest.raises(ConfigError, match=r"task arithmetic has no scorer 'correct'; it has accuracy, format"):
        names("task::correct")
    with pytest.raises(ConfigError, match=r"reward_funcs=\[task::accuracy\] needs dataset=task:NAME"):
        names("task::accuracy", "problems.jsonl")


def test_from_options_reads_a_configs_reward_options():
    from posttrain.options import MaskableRewardOptions, RewardOptions

    masked = RewardFunctions.from_options(MaskableRewardOptions(reward_funcs=["task"], reward_weights=[2.0, 0.5],
                                                                reward_workers=2, reward_errors="mask"), "task:arithmetic")
    assert (masked.weights, masked.workers, masked.on_error) == ([2.0, 0.5], 2, "mask")
    assert list(masked.functions) == list(RewardFunctions.resolve(["task"], "task:arithmetic").functions)
    assert RewardFunctions.from_options(RewardOptions(), "task:arithmetic").on_error == "raise"  # no reward_errors key


# ---------------------------------------------------------------- monitors, declared ranges, timeouts


def test_monitor_functions_are_scored_and_checked_but_never_in_the_reward():
    def reward(completions, **kwargs):
        return [1.0, None]

    def gold(completions, **kwargs):
        return [0.25, 0.75]

    result = RewardFunctions({"reward": reward}, monitors={"gold": gold})(PROMPTS, COMPLETIONS, {})
    assert result.total == [1.0, None]  # the second sample has no reward although the monitor scored it
    assert result.per_function == {"reward": [1.0, None]} and result.monitors == {"gold": [0.25, 0.75]}

    def broken(completions, **kwargs):
        raise RuntimeError("gold offline")

    with pytest.raises(UserError, match="monitor function 'broken' raised RuntimeError: gold offline"):
        RewardFunctions({"reward": reward}, monitors={"broken": broken})(PROMPTS, COMPLETIONS, {})


def test_from_options_reads_monitor_funcs_and_reward_timeout():
    from posttrain.algorithms.grpo import GRPOConfig

    config = GRPOConfig(reward_funcs=["task::accuracy"], monitor_funcs=["task::format"], reward_timeout=7.5)
    rewards = RewardFunctions.from_options(config, "task:arithmetic")
    assert list(rewards.functions) == ["accuracy"] and list(rewards.monitors) == ["format"] and rewards.timeout == 7.5
    assert RewardFunctions.from_options(GRPOConfig(reward_timeout=0), "task:arithmetic").timeout is None  # 0: no limit
    with pytest.raises(ConfigError, match=r"^monitor_funcs: reward 'format': unknown option\(s\) nope"):
        RewardFunctions.from_options(GRPOConfig(monitor_funcs=["format:nope=1"]), "task:arithmetic")


def test_declared_ranges_of_the_builtins_and_the_weighted_sum():
    from posttrain.rewards.functions import declared_range

    assert build("math_accuracy")[1].reward_range == (0.0, 1.0)
    assert build("math_accuracy:wrong=-1")[1].reward_range == (-1.0, 1.0)
    assert build("format")[1].reward_range == (0.0, 1.0)
    assert build("soft_overlong:max_tokens=10:penalty=2")[1].reward_range == (-2.0, 0.0)
    assert build("repetition")[1].reward_range == (-1.0, 0.0)
    assert build("code_tests")[1].reward_range == (0.0, 1.0)
    assert declared_range(RewardFunctions.resolve(["task"], "task:arithmetic").functions["accuracy"]) == (0.0, 1.0)
    # weights 1 and 0.5 over 0..1 and -1..0: low 0 + min(-0.5, 0) = -0.5, high 1 + max(-0.5, 0) = 1
    math_fn, overlong = build("math_accuracy")[1], build("soft_overlong:max_tokens=10")[1]
    assert RewardFunctions({"a": math_fn, "b": overlong}, weights=[1.0, 0.5]).total_range() == (-0.5, 1.0)
    # a negative weight flips a range: -1 x 0..1 is -1..0
    assert RewardFunctions({"a": math_fn}, weights=[-1.0]).total_range() == (-1.0, 0.0)
    assert RewardFunctions({"a": math_fn, "b": lambda **_: []}).total_range() is None  # one undeclared: unknown

    def odd(completions, **kwargs):
        return []

    odd.reward_range = (1, 1)
    with pytest.raises(ConfigError, match="reward function 'odd': reward_range must be two finite numbers"):
        RewardFunctions({"odd": odd})


def test_a_call_past_the_timeout_is_abandoned_counted_and_its_samples_get_none():
    release = threading.Event()

    def hangs(completions, **kwargs):
        release.wait(30)
        return [1.0] * len(completions)

    def quick(completions, **kwargs):
        return [0.5] * len(completions)

    async def hangs_async(completions, **kwargs):
        await asyncio.sleep(30)

    rewards = RewardFunctions({"hangs": hangs, "quick": quick}, monitors={"gold": hangs_async}, timeout=0.3)
    try:
        result = rewards(PROMPTS, COMPLETIONS, {})
        assert result.per_function == {"hangs": [None, None], "quick": [0.5, 0.5]} and result.total == [0.5, 0.5]
        assert result.monitors == {"gold": [None, None]}
        rewards(PROMPTS, COMPLETIONS, {})
        assert rewards.timeout_streaks == {("reward", "hangs"): 2, ("reward", "quick"): 0, ("monitor", "gold"): 2}
        assert rewards.pop_timeouts() == {("reward", "hangs"): 2, ("reward", "quick"): 0, ("monitor", "gold"): 2}
        assert rewards.pop_timeouts()[("reward", "hangs")] == 0  # counted since the last pop
    finally:
        release.set()
    rewards.functions["hangs"] = quick  # a call that returns ends the streak
    rewards(PROMPTS, COMPLETIONS, {})
    assert rewards.timeout_streaks[("reward", "hangs")] == 0
    with pytest.raises(ConfigError, match="reward_timeout must be a number of seconds >= 0"):
        RewardFunctions({"quick": quick}, timeout=-1)
