"""A round's agent metrics from its episodes (`Sample.extra["episode"]`, agents/episodes.py): per-episode
means of turns, tool calls and their failures, and how episodes ended, over every process's samples."""

from __future__ import annotations

from posttrain.agents.environment import COUNTERS
from posttrain.agents.episodes import ENDINGS


def episode_metrics(episodes: list[dict], timings: dict[str, float], reduce=None) -> dict[str, float]:
    """agent/<name>: the mean per episode of turns, each of COUNTERS and ENDINGS (a share), and
    agent/env_seconds, agent/generation_seconds: time spent in environment steps and in generation."""
    names = ("turns", *COUNTERS, *ENDINGS)
    sums = [float(len(episodes))] + [float(sum(e.get(name, 0) for e in episodes)) for name in names]
    if reduce:
        sums = reduce(sums)
    count, values = sums[0], sums[1:]
    out = {f"agent/{name}": value / count for name, value in zip(names, values)} if count else {}
    calls = out.get("agent/tool_calls", 0.0)
    if calls:  # the share of tool calls that returned a result (the others: errors the model saw)
        out["agent/tool_success"] = 1.0 - out["agent/tool_errors"] / calls
    return out | {f"agent/{key}": value for key, value in timings.items()}
