"""The web-form environment: seed 003's computer-use tasks in miniature (task:web_form).

The tools are the bound methods of the episode's `Browser` (tasks/web_form.py): open(url),
click(name), type(field, text), submit(), save(file). Each appends its milestone events
(navigation / click / fill / file / goal) to `self.events`, which the rollout hands to the
`milestone` reward (rewards/milestone.py) with the row's `expected`. A wrong action raises inside
the browser and comes back to the model as an error observation, counted as a tool error.

The episode ends when the receipt is saved (the task's last action; the episode then holds the goal
event, verified or not) or when the model replies without a tool call; `info["success"]` is the
verified goal. The environment's own rewards are 0: the recipe's `milestone` reward scores the episode.
"""

from __future__ import annotations

from posttrain.agents.environment import Turn
from posttrain.agents.tool_env import ToolEnvironment
from posttrain.errors import DataError
from posttrain.tasks.web_form import TOOL_NAMES, Browser


class WebFormEnvironment(ToolEnvironment):
    def __init__(self):
        self.browser = Browser()
        self.tools = [getattr(self.browser, name) for name in TOOL_NAMES]

    def reset(self, row: dict) -> list[dict]:
        want = row.get("want")
        if not isinstance(want, dict) or not {"url", "field", "value", "file"} <= set(want):
            raise DataError("the web_form environment reads each row's 'want' column ({url, field, value, file}); "
                            "use dataset=task:web_form")
        messages = super().reset(row)
        self.browser.reset(want, self.events)  # the tools append to this episode's events
        return messages

    def step(self, reply: str) -> Turn:
        turn = super().step(reply)
        if not turn.done and self.browser.files:  # the receipt is saved: the task's last action
            turn.done = True
            turn.info["success"] = self.browser.goal_reached()
        return turn

    def finish(self, answer: str) -> Turn:
        return Turn(done=True, info={"success": self.browser.goal_reached()})
