"""Reward functions in TRL's calling convention: f(prompts, completions, **columns) -> list[float | None].

Columns of the dataset arrive as keyword arguments (here `answer`, from examples/prompts.jsonl).
Completions are message lists for conversational prompts and strings otherwise.

    posttrain grpo dataset=examples/prompts.jsonl reward_funcs=[examples/my_rewards.py:correct]
"""

import re


def _text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else completion


def correct(prompts, completions, answer, **columns) -> list[float]:
    """1.0 when <answer>...</answer> holds the expected answer, else 0.0."""
    found = [re.search(r"<answer>\s*(-?\d+)\s*</answer>", _text(c)) for c in completions]
    return [1.0 if m and m.group(1) == str(a) else 0.0 for m, a in zip(found, answer)]


def short(prompts, completions, **columns) -> list[float]:
    """A small bonus for brevity: 1 at no characters, falling to 0 at 400."""
    return [max(0.0, 1.0 - len(_text(c)) / 400) for c in completions]


def score(prompts, completions, answer, **columns) -> list[float]:
    """Correctness plus a tenth of the brevity bonus."""
    return [c + 0.1 * s for c, s in zip(correct(prompts, completions, answer), short(prompts, completions))]
