"""Environments users already have, driven through our protocol (issue 16, point 5) without a rewrite.

`as_environment_factory(obj)` returns a zero-argument callable that makes one environment per episode
(`reset(row)`, then `step(reply) -> Turn`). It accepts:

- a class following our protocol (its `step` returns a Turn): used as it is;
- a plain Python class with `reset(row)` and a gym-style `step(reply)` returning `(messages, reward, done)`,
  `(messages, reward, done, info)`, gymnasium's `(obs, reward, terminated, truncated, info)`, or a dict
  with those keys; an observation given as a string becomes a user message;
- a zero-argument function that makes such an object;
- a `verifiers`-style multi-turn environment (an instance, or a class made with no arguments): the
  verifiers package's MultiTurnEnv interface, `env_response(messages, state)` (returning the new
  messages, or `(messages, state)` in older versions; sync or async), `is_completed(messages, state)`
  (or `is_completed(state)`), an optional `setup_state(state)`, `max_turns`, and a `rubric` whose
  `funcs` / `weights` score the finished episode (each function called with the names it asks for:
  prompt, completion, answer, state, task, info, and the rubric's class objects such as `parser`).
  Duck-typed: the verifiers package itself is not imported.
"""

from __future__ import annotations

import inspect
from typing import Callable

from posttrain.agents.environment import Turn
from posttrain.agents.tools import resolve
from posttrain.errors import ConfigError

_EXPECTED = ("an environment class with reset(row) and step(reply) (returning a Turn, a (messages, reward, done) "
             "tuple or a dict), a function that makes one, or a verifiers-style MultiTurnEnv with env_response "
             "and is_completed")


def as_environment_factory(obj) -> Callable:
    """A zero-argument callable making one environment per episode from `obj` (see the module docstring)."""
    if _is_verifiers(obj):
        return (lambda: VerifiersAdapter(obj())) if inspect.isclass(obj) else (lambda: VerifiersAdapter(obj))
    if inspect.isclass(obj):
        if not (callable(getattr(obj, "reset", None)) and callable(getattr(obj, "step", None))):
            raise ConfigError(f"environment: class {obj.__name__} has no reset/step; expected {_EXPECTED}")
        from posttrain.agents.tool_env import ToolEnvironment
        return obj if issubclass(obj, ToolEnvironment) else (lambda: _adapt(obj()))
    if hasattr(obj, "reset") and hasattr(obj, "step"):
        raise ConfigError(f"environment: got an instance of {type(obj).__name__}; an episode needs its own "
                          f"environment object: pass the class (or a function that makes one)")
    if callable(obj):
        return lambda: _adapt(obj())
    raise ConfigError(f"environment: got {type(obj).__name__}; expected {_EXPECTED}")


def _is_verifiers(obj) -> bool:
    return callable(getattr(obj, "env_response", None)) and callable(getattr(obj, "is_completed", None))


def _adapt(env):
    if _is_verifiers(env):
        return VerifiersAdapter(env)
    if not (callable(getattr(env, "reset", None)) and callable(getattr(env, "step", None))):
        raise ConfigError(f"environment: the factory made a {type(env).__name__}, which has no reset/step; "
                          f"expected {_EXPECTED}")
    return StepAdapter(env)


class StepAdapter:
    """A plain class whose `step` answers a tuple or a dict, seen through our protocol. Attributes not
    defined here (tools, and the `style` / `timeout` the rollout sets) are the wrapped object's."""

    def __init__(self, env):
        object.__setattr__(self, "env", env)

    def __getattr__(self, name):
        return getattr(self.env, name)

    def __setattr__(self, name, value):
        setattr(self.env, name, value)

    @property
    def tools(self) -> list:
        return list(getattr(self.env, "tools", []) or [])

    def reset(self, row: dict) -> list[dict]:
        return _messages(self.env.reset(row))

    def step(self, reply: str) -> Turn:
        return as_turn(self.env.step(reply))


def as_turn(result) -> Turn:
    """A Turn from what a step returned: a Turn, a dict, or a gym / gymnasium tuple."""
    if isinstance(result, Turn):
        return result
    if isinstance(result, dict):
        unknown = set(result) - {"messages", "observation", "reward", "events", "done", "info"}
        if unknown:
            raise ConfigError(f"environment: step returned a dict with keys {sorted(unknown)}; use messages "
                              f"(or observation), reward, events, done, info")
        observation = result.get("messages", result.get("observation"))
        return Turn(_messages(observation), float(result.get("reward") or 0.0), list(result.get("events") or []),
                    bool(result.get("done", False)), dict(result.get("info") or {}))
    if isinstance(result, tuple) and len(result) in (3, 4, 5):
        observation, reward, done = result[:3]
        if len(result) == 5:  # gymnasium: (obs, reward, terminated, truncated, info)
            done = done or result[3]
        info = dict(result[-1] or {}) if len(result) > 3 else {}
        return Turn(_messages(observation), float(reward or 0.0), list(info.pop("events", [])), bool(done), info)
    raise ConfigError(f"environment: step returned {type(result).__name__}; return a Turn, a dict or a "
                      f"(messages, reward, done) tuple")


def _messages(observation) -> list[dict]:
    if observation is None:
        return []
    if isinstance(observation, str):
        return [{"role": "user", "content": observation}] if observation else []
    if isinstance(observation, dict):
        return [dict(observation)]
    return [dict(message) for message in observation]


def _call(fn, **available):
    """fn called with the arguments it names (all of them if it takes **kwargs), awaited if async."""
    parameters = inspect.signature(fn).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        available = {k: v for k, v in available.items() if k in parameters}
    return resolve(fn(**available))


class VerifiersAdapter:
    """A verifiers-style MultiTurnEnv as our protocol: the messages and state dict of one episode live here."""

    def __init__(self, env):
        self.env = env
        self.tools = list(getattr(env, "tools", None) or [])

    def reset(self, row: dict) -> list[dict]:
        prompt = _messages(row["prompt"])
        self.messages = [dict(m) for m in prompt]
        self.state = {"prompt": prompt, "completion": [], "answer": row.get("answer", ""), "task": row.get("task", "default"),
                      "info": row.get("info") or {}, "responses": [], "turn": 0, "trajectory": []}
        if callable(getattr(self.env, "setup_state", None)):
            self.state = _call(self.env.setup_state, state=self.state) or self.state
        return [dict(m) for m in prompt]

    def step(self, reply: str) -> Turn:
        self.messages.append({"role": "assistant", "content": reply})
        self.state["responses"].append(reply)
        self.state["trajectory"].append({"completion": [self.messages[-1]]})
        self.state["completion"] = self.messages[len(self.state["prompt"]):]
        max_turns = getattr(self.env, "max_turns", -1) or -1
        if self._completed() or 0 < max_turns <= len(self.state["responses"]):
            return self._finish()
        response = _call(self.env.env_response, messages=self.messages, state=self.state)
        if isinstance(response, tuple):  # older verifiers: (messages, state)
            response, self.state = response
        new = _messages(response)
        self.messages += new
        self.state["turn"] += 1
        self.state["completion"] = self.messages[len(self.state["prompt"]):]
        if self.state.get("final_env_response") is not None:  # newer verifiers: the environment ended it
            return self._finish(new)
        return Turn(messages=new)

    def _completed(self) -> bool:
        return bool(_call(self.env.is_completed, messages=self.messages, state=self.state))

    def _finish(self, messages: list[dict] | None = None) -> Turn:
        """The last Turn: the rubric's weighted sum of its functions, the episode's reward."""
        rubric = getattr(self.env, "rubric", None)
        funcs = list(getattr(rubric, "funcs", None) or [])
        weights = list(getattr(rubric, "weights", None) or [1.0] * len(funcs))
        available = {"prompt": self.state["prompt"], "completion": self.state["completion"],
                     "answer": self.state["answer"], "state": self.state, "task": self.state["task"],
                     "info": self.state["info"], **(getattr(rubric, "class_objects", None) or {})}
        scores = {getattr(f, "__name__", f"func{i}"): float(_call(f, **available)) for i, f in enumerate(funcs)}
        reward = sum(w * s for w, s in zip(weights, scores.values()))
        self.state["reward"] = reward
        return Turn(messages=messages or [], reward=reward, done=True, info={"rubric": scores})
