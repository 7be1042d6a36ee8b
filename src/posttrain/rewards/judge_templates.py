"""Default prompt templates of the LLM judges, how a user's template file is read, and how it is filled.

A template is plain text with placeholders in braces:

- pointwise: `{completion}` (required), `{prompt}`, `{min_score}`, `{max_score}`;
- pairwise: `{completion_a}` and `{completion_b}` (required), `{prompt}`.

Filling is one pass of literal substitution, not `str.format`: other braces in a template (a JSON
example, say) are left alone, and a placeholder that appears inside a filled-in text is not
expanded again. A prompt given as messages is written as its single user message's text, or as
`role: content` lines when it has several; a completion as the text of its last assistant message.
"""

from __future__ import annotations

import re
from pathlib import Path

from posttrain.errors import ConfigError

POINTWISE_TEMPLATE = """Rate how well the response answers the request, on a scale of {min_score} to {max_score} \
({max_score} is best).

Request:
{prompt}

Response:
{completion}

Reply in the form "Score: N"."""

PAIRWISE_TEMPLATE = """Which response answers the request better?

Request:
{prompt}

Response A:
{completion_a}

Response B:
{completion_b}

Reply with a single letter: A or B."""

REQUIRED = {"pointwise": ("{completion}",), "pairwise": ("{completion_a}", "{completion_b}")}
DEFAULTS = {"pointwise": POINTWISE_TEMPLATE, "pairwise": PAIRWISE_TEMPLATE}
_PLACEHOLDER = re.compile(r"\{(prompt|completion|completion_a|completion_b|min_score|max_score)\}")


def load_template(path: str | None, kind: str) -> str:
    """The default template of `kind` ('pointwise' or 'pairwise') for None, else the file's text, checked."""
    if path is None or path == "":
        return DEFAULTS[kind]
    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise ConfigError(f"judge template file not found: {path}; give a text file with the placeholders "
                          f"{', '.join(REQUIRED[kind])}")
    text = file.read_text(encoding="utf-8")
    missing = [p for p in REQUIRED[kind] if p not in text]
    if missing:
        raise ConfigError(f"judge template {path} lacks {', '.join(missing)}; a {kind} template needs "
                          f"{', '.join(REQUIRED[kind])} (and may use {{prompt}})")
    return text


def fill(template: str, **values) -> str:
    """Replace each `{name}` placeholder whose name is in `values`, in one pass."""
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


def prompt_text(prompt) -> str:
    """A prompt as text: a string unchanged; one message -> its content; several -> `role: content` lines."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, dict):
        prompt = [prompt]
    messages = [m for m in prompt if isinstance(m, dict)]
    if len(messages) == 1:
        return str(messages[0].get("content", ""))
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages)
