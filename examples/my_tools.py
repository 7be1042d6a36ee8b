"""Tools in TRL's convention: typed Python functions with a docstring (transformers' get_json_schema
reads both), given to an online stage with tools=.

    posttrain grpo dataset=examples/prompts.jsonl tools=[examples/my_tools.py:add,examples/my_tools.py:multiply] \\
        reward_funcs=[examples/my_rewards.py:correct]
"""


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    return a * b
