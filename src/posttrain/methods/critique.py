"""Self-critique and revision against written principles (Constitutional AI's supervised stage).

Seed 003 L3213: "In the supervised phase they sample from an initial model, then generate
self-critiques and revisions, and then finetune the original model on revised responses";
L3215: "the critiques ... are steered by a small set of principles drawn from a 'constitution'".

This module holds the parts that need no model: the principles (a constitution), the seeded draw
of one principle per (prompt, round), and the critique / revision requests built from templates.
A template is plain text with `{placeholders}` (`{{` / `}}` for literal braces):

    critique template: {prompt} {response} {principle}             ({response}, {principle} required)
    revision template: {prompt} {response} {principle} {critique}  ({response}, {critique} required)
"""

from __future__ import annotations

import random
import string
from pathlib import Path

import yaml

from posttrain.errors import ConfigError

# Short principles in the spirit of the paper's constitution (Bai et al. 2022, appendix C): each
# names what the critique looks for, so "{principle}" reads as the thing to check.
DEFAULT_PRINCIPLES: list[str] = [
    "Is the response harmful, unethical, dangerous or illegal in any way?",
    "Is the response rude, insulting, toxic or disrespectful toward anyone?",
    "Does the response contain false, misleading or made-up claims?",
    "Does the response fail to answer what was actually asked?",
    "Is the response preachy, evasive or needlessly unhelpful?",
]

DEFAULT_CRITIQUE_TEMPLATE = (
    "Request: {prompt}\n\nResponse: {response}\n\n"
    "Critique the response against this principle: {principle}\n"
    "Point out specifically where the response falls short."
)

DEFAULT_REVISION_TEMPLATE = (
    "Request: {prompt}\n\nResponse: {response}\n\nCritique: {critique}\n\n"
    "Rewrite the response so that it follows this principle: {principle}\n"
    "Address the critique, and reply with the revised response only."
)

CRITIQUE_FIELDS = {"prompt", "response", "principle"}
REVISION_FIELDS = {"prompt", "response", "principle", "critique"}


def load_principles(path: str | None) -> list[str]:
    """The constitution: the built-in principles, or a YAML file holding a list of strings
    (or a mapping with a `principles:` list)."""
    if path is None:
        return list(DEFAULT_PRINCIPLES)
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"principles file {path} not found; give a YAML file with a list of principle strings")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"principles file {path} is not valid YAML ({first}); write a list of principle strings") from None
    if isinstance(data, dict):
        data = data.get("principles")
    if not isinstance(data, list) or not data or not all(isinstance(p, str) and p.strip() for p in data):
        raise ConfigError(f"principles file {path} must hold a non-empty list of non-empty strings "
                          "(or a mapping with such a 'principles:' list)")
    return [p.strip() for p in data]


def _fields(template: str, what: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ConfigError(f"{what} template is malformed ({exc}); write literal braces as {{{{ and }}}}") from None


def check_template(template: str, what: str, allowed: set[str], required: set[str]) -> str:
    """`template` unchanged if its placeholders are allowed and the required ones are present."""
    names = _fields(template, what)
    unknown, missing = names - allowed, required - names
    if unknown:
        raise ConfigError(f"{what} template has unknown placeholder(s) {', '.join(sorted(unknown))}; "
                          f"use only {', '.join('{' + n + '}' for n in sorted(allowed))}")
    if missing:
        raise ConfigError(f"{what} template lacks {', '.join('{' + n + '}' for n in sorted(missing))}")
    return template


def load_template(path: str | None, default: str, what: str, allowed: set[str], required: set[str]) -> str:
    """The template in the text file `path` (or `default`), checked."""
    if path is None:
        return check_template(default, what, allowed, required)
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{what} template file {path} not found; give a text file with {{placeholders}}")
    return check_template(file.read_text(encoding="utf-8").strip(), what, allowed, required)


def draw_principles(principles: list[str], num_prompts: int, rounds: int, seed: int) -> list[list[str]]:
    """One principle per (prompt, round), drawn uniformly at random as in the paper; prompt-major
    from one generator seeded with `seed`, so a run is reproducible and independent of batching."""
    rng = random.Random(seed)
    return [[rng.choice(principles) for _ in range(rounds)] for _ in range(num_prompts)]


def prompt_text(prompt) -> str:
    """A dataset prompt as text: the string itself, the one message's content, or a transcript."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1:
        return str(prompt[0]["content"])
    return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


def critique_request(template: str, prompt: str, response: str, principle: str) -> str:
    return template.format(prompt=prompt, response=response, principle=principle)


def revision_request(template: str, prompt: str, response: str, principle: str, critique: str) -> str:
    return template.format(prompt=prompt, response=response, principle=principle, critique=critique)
