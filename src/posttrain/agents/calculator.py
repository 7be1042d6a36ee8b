"""The calculator environment: arithmetic with a `calculate(expression)` tool (task:calculator).

An episode: the user's question (the row's prompt); the model calls `calculate` as often as it likes
(each call's result, or the error it caused, comes back as a tool message) and then answers in
<answer>N</answer>. The final turn's reward is 1{answer right} (`info["success"]` the same). The
"valid tool protocol" part of the reward is the task's `tool_use` scorer (a tool result came back
and none was an error), given as a reward function with a small weight in the recipe
(`reward_funcs: [task::tool_use]`, `reward_weights: [0.1]`): between two wrong answers the one that
used the tool cleanly is preferred, and a right answer always outweighs protocol. The tool is the
task's safe `ast` evaluator (never `eval`).
"""

from __future__ import annotations

from posttrain.agents.environment import Turn
from posttrain.agents.tool_env import ToolEnvironment
from posttrain.errors import DataError
from posttrain.tasks.arithmetic import answers_match, extract_answer
from posttrain.tasks.calculator import calculate


class CalculatorEnvironment(ToolEnvironment):
    def __init__(self):
        self.tools = [calculate]

    def reset(self, row: dict) -> list[dict]:
        if "answer" not in row:
            raise DataError("the calculator environment reads each row's 'answer' column; use dataset=task:calculator "
                            "or give rows a prompt and an answer")
        return super().reset(row)

    def finish(self, answer: str) -> Turn:
        right = answers_match(extract_answer(answer), self.row["answer"])
        return Turn(reward=float(right), done=True, info={"success": right})
