"""ToolEnvironment: the environment of a model that calls Python tools until it answers.

Each model turn is parsed in the template's tool-call style (agents/tool_calls.py). A reply without
tool calls (and without a broken one) is the final answer: `finish` scores it and ends the episode.
Otherwise every call runs through the episode's ToolBox and its result comes back as a `tool` message;
every call that could not be read comes back as a `tool` message "error: ...", so the model sees its
mistake, as real agents do. Turn.info counts them (environment.COUNTERS); `events` is what the tools
appended to `self.events` during the turn (the milestone reward reads them).

Subclasses set `self.tools` (bound methods keep the episode's state on self) and override `finish`
(and `turn_reward` for per-turn rewards):

    class Calculator(ToolEnvironment):
        def __init__(self):
            self.tools = [self.calculate]
        def calculate(self, expression: str) -> str: ...
        def finish(self, answer):
            right = answer.strip() == self.row["answer"]
            return Turn(reward=float(right), done=True, info={"success": right})
"""

from __future__ import annotations

from typing import Callable

from posttrain.agents.environment import COUNTERS, Turn
from posttrain.agents.tool_calls import ParsedReply, parse_reply
from posttrain.agents.tools import ToolBox, ToolResult


class ToolEnvironment:
    style = "hermes"  # the tool-call style of the policy's chat template (set by the rollout: tool_style)
    timeout = 10.0  # seconds a tool call may take (set by the rollout: tool_timeout)
    tools: list[Callable] = []

    def reset(self, row: dict) -> list[dict]:
        self.row, self.events = row, []
        self.toolbox = ToolBox(list(self.tools), timeout=self.timeout)
        prompt = row["prompt"]
        if isinstance(prompt, str):
            return [{"role": "user", "content": prompt}]
        return [dict(message) for message in prompt]

    def step(self, reply: str) -> Turn:
        parsed = parse_reply(reply, self.style)
        if not parsed.calls and not parsed.errors:
            return self.finish(parsed.content)
        seen = len(self.events)
        results = [self.toolbox.call(call) for call in parsed.calls]
        messages = [{"role": "tool", "name": call.name, "content": result.content}
                    for call, result in zip(parsed.calls, results)]
        messages += [{"role": "tool", "content": f"error: {error}"} for error in parsed.errors]
        info = dict.fromkeys(COUNTERS, 0)
        info["tool_calls"] = len(parsed.calls)
        info["parse_errors"] = len(parsed.errors)
        info["tool_errors"] = sum(result.error is not None for result in results)  # of every kind below
        info["unknown_tools"] = sum(result.error == "unknown_tool" for result in results)
        info["tool_timeouts"] = sum(result.error == "timeout" for result in results)
        return Turn(messages=messages, reward=self.turn_reward(parsed, results), events=self.events[seen:],
                    done=False, info=info)

    def turn_reward(self, parsed: ParsedReply, results: list[ToolResult]) -> float:
        """r_t of a turn that called tools (override for per-turn rewards); 0.0 by default."""
        return 0.0

    def finish(self, answer: str) -> Turn:
        """The final answer (the reply's text) -> the last Turn; override to score it."""
        return Turn(done=True, info={"success": False})
