"""Environments users already have: a plain gym-style class and verifiers-style MultiTurnEnvs (old and new
interface) play the same guessing game through reset/step and give the same Turns."""

import pytest

from posttrain.agents.adapters import as_environment_factory, as_turn
from posttrain.agents.environment import Environment, Turn
from posttrain.agents.tool_env import ToolEnvironment
from posttrain.errors import ConfigError

ROW = {"prompt": [{"role": "user", "content": "Guess my number (1-9)."}], "answer": "7"}
REPLIES = ["5", "8", "7"]
EXPECTED = [Turn([{"role": "user", "content": "higher"}]), Turn([{"role": "user", "content": "lower"}]),
            Turn([], reward=1.0, done=True)]


def hint(guess: str, answer: str) -> str:
    return "higher" if int(guess) < int(answer) else "lower"


class GuessGym:
    """A plain Python class: reset(row) -> prompt, step(reply) -> (observation, reward, done)."""

    def reset(self, row):
        self.answer = row["answer"]
        return row["prompt"][0]["content"]

    def step(self, reply):
        if reply == self.answer:
            return None, 1.0, True
        return hint(reply, self.answer), 0.0, False


class Rubric:  # the part of verifiers.Rubric the adapter reads
    def __init__(self, funcs, weights=None):
        self.funcs, self.weights, self.class_objects = funcs, weights or [], {"parser": str.strip}


def correct(completion, answer, parser) -> float:
    return float(parser(completion[-1]["content"]) == answer)


class GuessVerifiersOld:
    """verifiers <= 0.1.4: sync methods, env_response returns (messages, state)."""

    max_turns = 5

    def __init__(self):
        self.rubric = Rubric([correct])

    def is_completed(self, messages, state, **kwargs):
        return messages[-1]["content"] == state["answer"]

    def env_response(self, messages, state, **kwargs):
        return [{"role": "user", "content": hint(messages[-1]["content"], state["answer"])}], state


class GuessVerifiersNew:
    """verifiers >= 0.1.5: async, env_response returns the new messages and edits state in place."""

    def __init__(self, max_turns=-1):
        self.max_turns = max_turns
        self.rubric = Rubric([correct, self.turns], weights=[1.0, 0.0])  # a metric: weight 0

    async def setup_state(self, state):
        state["hints"] = 0
        return state

    async def is_completed(self, state):
        return state["completion"][-1]["content"] == state["answer"]

    async def env_response(self, messages, state):
        state["hints"] += 1
        return [{"role": "user", "content": hint(messages[-1]["content"], state["answer"])}]

    async def turns(self, state) -> float:
        return float(len(state["trajectory"]))


def play(factory, replies=REPLIES):
    env = factory()
    opening = env.reset(ROW)
    return env, opening, [env.step(reply) for reply in replies]


def test_gym_and_verifiers_environments_give_the_same_turns():
    for source in (GuessGym, lambda: GuessGym(), GuessVerifiersOld, GuessVerifiersNew(), GuessVerifiersNew):
        env, opening, turns = play(as_environment_factory(source))
        assert isinstance(env, Environment) and env.tools == []
        assert opening == ROW["prompt"]
        assert [(t.messages, t.reward, t.done, t.events) for t in turns] == \
            [(t.messages, t.reward, t.done, t.events) for t in EXPECTED], source
    assert turns[-1].info == {"rubric": {"correct": 1.0, "turns": 3.0}}
    assert env.state["hints"] == 2 and env.state["reward"] == 1.0


def test_verifiers_max_turns_ends_the_episode_unsolved():
    env, _, turns = play(as_environment_factory(GuessVerifiersNew(max_turns=2)), REPLIES[:2])
    assert turns[-1] == Turn([], reward=0.0, done=True, info={"rubric": {"correct": 0.0, "turns": 2.0}})


def test_step_results_as_turns():
    assert as_turn(("look", 0.5, False, {"events": [{"type": "click"}], "k": 1})) == \
        Turn([{"role": "user", "content": "look"}], 0.5, [{"type": "click"}], False, {"k": 1})
    assert as_turn(([{"role": "tool", "content": "r"}], 0.0, False, True, {})) == Turn([{"role": "tool", "content": "r"}], done=True)
    assert as_turn({"observation": "x", "reward": 2, "done": True, "info": {"success": True}}) == \
        Turn([{"role": "user", "content": "x"}], 2.0, [], True, {"success": True})
    same = Turn(reward=3.0)
    assert as_turn(same) is same
    with pytest.raises(ConfigError, match="keys \\['score'\\]"):
        as_turn({"score": 1})
    with pytest.raises(ConfigError, match="step returned int"):
        as_turn(3)


def test_our_protocol_classes_pass_and_anything_else_is_a_config_error():
    class Mine(ToolEnvironment):
        pass

    assert as_environment_factory(Mine) is Mine

    class Native:  # our protocol without subclassing: wrapped, Turns pass through, settings reach it
        style, tools = "hermes", []

        def reset(self, row):
            return row["prompt"]

        def step(self, reply):
            return Turn(reward=len(reply), done=True)

    env = as_environment_factory(Native)()
    env.style = "llama3"
    assert env.env.style == "llama3" and env.style == "llama3"
    assert env.reset(ROW) == ROW["prompt"] and env.step("abc") == Turn(reward=3.0, done=True)

    with pytest.raises(ConfigError, match="instance of GuessGym.*pass the class"):
        as_environment_factory(GuessGym())
    with pytest.raises(ConfigError, match="class Rubric has no reset/step"):
        as_environment_factory(Rubric)
    with pytest.raises(ConfigError, match="got str; expected an environment class"):
        as_environment_factory("calculator")
    with pytest.raises(ConfigError, match="the factory made a list"):
        as_environment_factory(lambda: [])()  # a factory function: when it makes the wrong thing
