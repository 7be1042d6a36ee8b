"""environment= and tools= as the online stages read them: names, files, TRL's tools= list."""

import pytest

from posttrain.agents.episodes import EpisodeRunner
from posttrain.agents.registry import environment_factory, tools_factory
from posttrain.errors import ConfigError, UserError
from posttrain.generation import SamplingParams

from replay_backend import Replay
from unit.agents.test_episodes import ROW, TOKENIZER


def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    return a * b


def untyped(a, b):
    return a * b


def test_trl_tools_become_a_tool_environment_whose_schemas_reach_the_prompt():
    make = tools_factory(["unit.agents.test_registry:multiply"])
    call = '<tool_call>\n{"name": "multiply", "arguments": {"a": 12, "b": 3}}\n</tool_call>'
    runner = EpisodeRunner(make, TOKENIZER, Replay(TOKENIZER, [call, "<answer>36</answer>"]), max_turns=3, max_length=512, tool_style="hermes")
    rollouts = runner.run([ROW], 1, SamplingParams(max_new_tokens=48, temperature=1.0, seeds=[1]))
    assert "Tools: multiply(a, b)" in TOKENIZER.decode(rollouts.prompt_ids[0], skip_special_tokens=False)
    assert rollouts.extra["completions"][0][1] == {"role": "tool", "name": "multiply", "content": "36"}
    episode = rollouts.extra["sample_extra"][0]["episode"]
    assert (episode["turns"], episode["tool_calls"], episode["tool_errors"]) == (2, 1, 0)


def test_bad_environment_and_tool_specs_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="environment=nosuch is not a built-in environment"):
        environment_factory("nosuch")
    with pytest.raises(UserError, match="environment file not found"):
        environment_factory(f"{tmp_path}/nope.py:Env")
    with pytest.raises(ConfigError, match="untyped"):
        tools_factory(["unit.agents.test_registry:untyped"])
    (tmp_path / "env.py").write_text("class NotAnEnvironment:\n    pass\n")
    with pytest.raises(ConfigError, match="NotAnEnvironment"):
        environment_factory(f"{tmp_path}/env.py:NotAnEnvironment")
