"""The environment protocol: what a multi-turn rollout talks to (seed 003, S3 L2987-3125).

An episode is a trajectory (o_0, a_0, r_0, o_1, a_1, r_1, ...): the environment gives the opening
observation o_0 as chat messages (`reset`), the model answers with one assistant turn a_t (its raw
text), and the environment answers with a `Turn`: the next observation o_{t+1} as chat messages
(role "tool" for tool results, "user" for anything else), the turn's reward r_t, the events the turn
caused (read by the milestone reward) and whether the episode is over. The objective is
J = E[Σ_t γ^t r_t] (S3 L2995), γ the `turn_gamma` option.

One environment object serves one episode: the rollout makes a fresh one per episode with
`make_environment(row)` (a class called with no arguments, then `reset(row)`), so an environment may
keep its episode's state on `self`. `tools` lists the Python callables the model may call; their
signatures and docstrings become the JSON schemas the chat template receives (agents/tools.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

# The counters an environment may report in Turn.info (summed over an episode's turns, logged as agent/<name>)
COUNTERS = ("tool_calls", "tool_errors", "parse_errors", "unknown_tools", "tool_timeouts")


@dataclass
class Turn:
    """The environment's answer to one model turn."""
    messages: list[dict] = field(default_factory=list)  # the next observation; [] when done
    reward: float = 0.0  # r_t, placed at the last token of the model's turn
    events: list[dict] = field(default_factory=list)  # e.g. {"type": "navigation", "url": ...} (rewards/milestone.py)
    done: bool = False
    info: dict = field(default_factory=dict)  # COUNTERS, and "success": bool on the last turn


@runtime_checkable
class Environment(Protocol):
    tools: list[Callable]

    def reset(self, row: dict) -> list[dict]:
        """Start an episode from a dataset row: its opening messages (the prompt)."""

    def step(self, reply: str) -> Turn:
        """The model's turn (its text, end-of-turn token removed) → the environment's answer."""
