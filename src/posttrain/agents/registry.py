"""`environment=` values: a built-in name, `FILE.py:Class` / `module:Class`, or an object given to the
Python API; each becomes a factory of one fresh environment per episode (agents/adapters.py adapts a
plain class or a verifiers-style environment to the Environment protocol)."""

from __future__ import annotations

from typing import Callable

from posttrain.agents.environment import Environment
from posttrain.callables import is_object_spec, load_callable, python_object
from posttrain.errors import ConfigError

ENVIRONMENTS = {
    "calculator": "posttrain.agents.calculator:CalculatorEnvironment",
    "web_form": "posttrain.agents.web_form:WebFormEnvironment",
}


def environment_factory(spec) -> Callable[[], Environment]:
    """The factory `spec` names (see the module docstring)."""
    from posttrain.agents.adapters import as_environment_factory

    if not isinstance(spec, str):
        return as_environment_factory(spec)
    if is_object_spec(spec):
        return as_environment_factory(python_object(spec, "environment"))
    ref = ENVIRONMENTS.get(spec, spec)
    if ":" not in ref:
        raise ConfigError(f"environment={spec} is not a built-in environment ({', '.join(ENVIRONMENTS)}) nor FILE.py:Class "
                          "or module:Class; name one of those")
    return as_environment_factory(load_callable(ref, "environment", "an environment class (reset(row), step(reply))"))


def tools_factory(specs: list) -> Callable[[], Environment]:
    """TRL's `tools=` without an environment: a ToolEnvironment with these functions, whose episode ends at
    the first reply without a tool call (the reward functions score it). A tool without type hints or
    docstring fails here, before any work."""
    from posttrain.agents.tool_env import ToolEnvironment
    from posttrain.agents.tools import tool_schema

    functions = [python_object(spec, "tools") if is_object_spec(spec) else
                 load_callable(spec, "tool", "a typed Python function with a docstring") if isinstance(spec, str) else spec
                 for spec in specs]
    for fn in functions:
        tool_schema(fn)

    def make() -> Environment:
        env = ToolEnvironment()
        env.tools = list(functions)
        return env

    return make
