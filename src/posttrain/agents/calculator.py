"""The calculator environment: arithmetic with a `calculate(expression)` tool (task:calculator).

An episode: the user's question (the row's prompt); the model calls `calculate` as often as it likes
(each call's result, or the error it caused, comes back as a tool message) and then answers in
<answer>N</answer>. The final turn's reward is

    r = 1{answer right} + PROTOCOL_BONUS · 1{the tool was used and every call was valid}

("the right answer (and a valid tool protocol)"): the bonus is small, so a right answer always
outweighs protocol, but between two wrong answers the one that used the tool cleanly is preferred,
which is what SFT-then-RL wants the policy to keep doing. `info["success"]` is the right answer.
The tool is the task's safe `ast` evaluator (never `eval`).
"""

from __future__ import annotations

from posttrain.agents.environment import Turn
from posttrain.agents.tool_calls import ParsedReply
from posttrain.agents.tool_env import ToolEnvironment
from posttrain.agents.tools import ToolResult
from posttrain.tasks.arithmetic import answers_match, extract_answer
from posttrain.tasks.calculator import calculate

PROTOCOL_BONUS = 0.1


class CalculatorEnvironment(ToolEnvironment):
    def __init__(self):
        self.tools = [calculate]
        self.valid_calls = self.bad_turns = 0

    def reset(self, row: dict) -> list[dict]:
        if "answer" not in row:
            from posttrain.errors import DataError

            raise DataError("the calculator environment reads each row's 'answer' column; use dataset=task:calculator "
                            "or give rows a prompt and an answer")
        self.valid_calls = self.bad_turns = 0
        return super().reset(row)

    def turn_reward(self, parsed: ParsedReply, results: list[ToolResult]) -> float:
        self.valid_calls += sum(result.error is None for result in results)
        self.bad_turns += int(bool(parsed.errors) or any(result.error is not None for result in results))
        return 0.0

    def protocol_ok(self) -> bool:
        return self.valid_calls > 0 and self.bad_turns == 0

    def finish(self, answer: str) -> Turn:
        right = answers_match(extract_answer(answer), self.row["answer"])
        reward = float(right) + PROTOCOL_BONUS * float(self.protocol_ok())
        return Turn(reward=reward, done=True, info={"success": right})
