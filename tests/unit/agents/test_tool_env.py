"""ToolEnvironment on scripted replies: tool messages appended, counters in info, events, the final answer."""

import time

from posttrain.agents.environment import COUNTERS, Environment, Turn
from posttrain.agents.tool_calls import format_tool_call
from posttrain.agents.tool_env import ToolEnvironment
from posttrain.agents.tools import ToolCall


class Shop(ToolEnvironment):
    """A tiny stateful environment: tools are bound methods and append milestone events."""

    def __init__(self):
        self.tools = [self.open, self.price, self.stall]
        self.page = None

    def open(self, url: str) -> str:
        """Open a page.

        Args:
            url: The page's address.
        """
        self.page = url
        self.events.append({"type": "navigation", "url": url})
        return f"page {url}: [button] buy"

    def price(self, item: str, count: int) -> int:
        """The price of some items.

        Args:
            item: The item's name.
            count: How many.
        """
        return {"pen": 3}[item] * count

    def stall(self) -> str:
        """Take too long."""
        time.sleep(2)
        return "late"

    def turn_reward(self, parsed, results):
        return 0.1 * sum(result.error is None for result in results)

    def finish(self, answer):
        right = answer.strip() == f"<answer>{self.row['answer']}</answer>"
        return Turn(reward=float(right), done=True, info={"success": right})


def counters(**values) -> dict:
    return {name: values.get(name, 0) for name in COUNTERS}


def test_tool_environment_on_scripted_replies():
    Shop.timeout = 0.2  # as the rollout sets tool_timeout
    env = Shop()
    assert isinstance(env, Environment)
    row = {"prompt": "What do 4 pens cost?", "answer": "12"}
    assert env.reset(row) == [{"role": "user", "content": "What do 4 pens cost?"}]
    assert [s["function"]["name"] for s in env.toolbox.schemas] == ["open", "price", "stall"]

    turn = env.step("I will look.\n" + format_tool_call([ToolCall("open", {"url": "shop.test"}), ToolCall("price", {"item": "pen", "count": 4})], "hermes"))
    assert turn.messages == [{"role": "tool", "name": "open", "content": "page shop.test: [button] buy"},
                             {"role": "tool", "name": "price", "content": "12"}]
    assert turn.info == counters(tool_calls=2) and not turn.done
    assert turn.events == [{"type": "navigation", "url": "shop.test"}] and env.page == "shop.test"
    assert abs(turn.reward - 0.2) < 1e-12

    turn = env.step(format_tool_call([ToolCall("buy", {}), ToolCall("price", {"item": "ink", "count": 1}),
                                      ToolCall("price", {"item": "pen"}), ToolCall("stall", {})], "hermes")
                    + '<tool_call>{"name": "open", "arguments": {url}}</tool_call>')
    assert turn.messages == [
        {"role": "tool", "name": "buy", "content": "error: unknown tool 'buy'; tools: open, price, stall"},
        {"role": "tool", "name": "price", "content": "error: price raised KeyError: 'ink'"},
        {"role": "tool", "name": "price", "content": "error: bad arguments for price: missing a required argument: 'count'"},
        {"role": "tool", "name": "stall", "content": "error: stall timed out after 0.2 s"},
        {"role": "tool", "content": "error: malformed tool call JSON: Expecting property name enclosed in double quotes at char 31"},
    ]
    assert turn.info == counters(tool_calls=4, tool_errors=4, parse_errors=1, unknown_tools=1, tool_timeouts=1)
    assert turn.events == [] and turn.reward == 0.0 and not turn.done

    final = env.step("<answer>12</answer>")
    assert final == Turn(messages=[], reward=1.0, events=[], done=True, info={"success": True})


def test_a_fresh_episode_and_the_default_finish():
    class Plain(ToolEnvironment):
        pass

    env = Plain()
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    opening = env.reset({"prompt": prompt})
    assert opening == prompt and opening[0] is not prompt[0]  # a copy: the episode's messages never alias the row
    assert env.toolbox.names == [] and env.events == []
    lone = env.step('<tool_call>{"name": "x"}</tool_call>')  # no tools: an unknown tool, not a crash
    assert lone.messages == [{"role": "tool", "name": "x", "content": "error: unknown tool 'x'; tools: none"}]
    assert env.step("Hello") == Turn(done=True, info={"success": False})
