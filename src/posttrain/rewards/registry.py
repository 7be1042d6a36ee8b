"""Built-in reward functions by name, with options: `NAME` or `NAME:key=value[:key=value ...]`.

    reward_funcs=[math_accuracy:wrong=-1, format, soft_overlong:max_tokens=512:buffer=128]

Each name maps to a factory `factory(**options) -> f(prompts, completions, **columns)`; the factory's
keyword arguments are the options (values are read as YAML scalars: `2`, `0.5`, `true`, `text`).
An option's value may itself hold colons inside brackets: `cascade:rule=[milestone:goal=0.5, task:web_form]`
or `cascade:judge=(judge:method=logprob)` (kept as written, for the factory to read as reward specs).
Factories live in their own modules and are imported only when named, so an unused reward costs
nothing (no torch model, no sandbox). A misspelled option is a one-line error listing the valid
ones with their defaults.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

import yaml

from posttrain.errors import ConfigError

BUILTIN: dict[str, str] = {
    "math_accuracy": "posttrain.rewards.math:math_accuracy",
    "format": "posttrain.rewards.format:think_answer_format",
    "soft_overlong": "posttrain.rewards.shaping:soft_overlong",
    "repetition": "posttrain.rewards.shaping:repetition_penalty",
    "code_tests": "posttrain.rewards.code:code_tests",
    "reward_model": "posttrain.rewards.learned:reward_model",
    "judge": "posttrain.rewards.judge:pointwise_judge",
    "pairwise_judge": "posttrain.rewards.judge:pairwise_judge",
    "process_reward_model": "posttrain.rewards.process:process_reward_model",
    "milestone": "posttrain.rewards.milestone:milestone_reward",
    "step_reward": "posttrain.rewards.learned:step_reward",
    "cascade": "posttrain.rewards.cascade:cascade_reward",
}

# Declared ranges (`reward_range`) of built-ins whose factory does not set one itself: code_tests gives
# the fraction of tests passed (mode=fraction) or 1/0 (mode=all), in [0, 1] either way.
DECLARED_RANGES: dict[str, tuple[float, float]] = {"code_tests": (0.0, 1.0)}


def check_choice(owner: str, option: str, value, choices) -> None:
    """The one-line error every reward factory gives for an option outside its choices."""
    if value not in choices:
        raise ConfigError(f"{owner}: {option} must be one of {', '.join(choices)}, got {value!r}")


def is_builtin(spec: str) -> bool:
    return spec.split(":", 1)[0] in BUILTIN


def split_top(text: str, sep: str) -> list[str]:
    """`text` split at each `sep` outside () and [] (so a nested spec's colons and commas stay whole)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "([") - (ch in ")]")
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def parse_spec(spec: str) -> tuple[str, dict]:
    """`"name:a=1:b=x"` -> `("name", {"a": 1, "b": "x"})`; a bracketed value stays a string."""
    name, *parts = split_top(spec, ":")
    options = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ConfigError(f"reward '{spec}': option '{part}' is not key=value; write {name}:key=value[:key=value]")
        if value.startswith(("(", "[")):
            options[key.strip()] = value
            continue
        parsed = yaml.safe_load(value) if value else ""
        options[key.strip()] = value if isinstance(parsed, (dict, list)) or parsed is None else parsed
    return name, options


def factory_options(factory: Callable) -> dict[str, object]:
    """The options a factory takes, with their defaults (`inspect.Parameter.empty` = required)."""
    return {name: p.default for name, p in inspect.signature(factory).parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def load_factory(name: str) -> Callable:
    module_name, attr = BUILTIN[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def build(spec: str) -> tuple[str, Callable]:
    """(the name to log it under, the reward function) for a built-in spec."""
    name, options = parse_spec(spec)
    if name not in BUILTIN:
        raise ConfigError(f"unknown reward '{name}'; built-in rewards: {', '.join(sorted(BUILTIN))}")
    factory = load_factory(name)
    valid = factory_options(factory)
    unknown = sorted(set(options) - set(valid))
    missing = sorted(k for k, v in valid.items() if v is inspect.Parameter.empty and k not in options)
    if unknown or missing:
        listed = ", ".join(k if v is inspect.Parameter.empty else f"{k}={v!r}" for k, v in valid.items())
        problem = f"unknown option(s) {', '.join(unknown)}" if unknown else f"missing option(s) {', '.join(missing)}"
        raise ConfigError(f"reward '{name}': {problem}; its options are: {listed or '(none)'}")
    try:
        fn = factory(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"reward '{spec}': {exc}") from None
    if name in DECLARED_RANGES and getattr(fn, "reward_range", None) is None:
        fn.reward_range = DECLARED_RANGES[name]
    return name, fn
