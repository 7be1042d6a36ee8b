"""Reward functions with TRL's calling convention: `f(prompts, completions, **columns) -> list[float | None]`."""

from posttrain.rewards.functions import RewardFunctions, RewardResult

__all__ = ["RewardFunctions", "RewardResult"]
