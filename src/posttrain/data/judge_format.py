"""The text format of LLM judges: default prompt templates, how a user's template file is read and
filled, and how a judge's reply is parsed into a score or a verdict.

A template is plain text with placeholders in braces:

- pointwise: `{completion}` (required), `{prompt}`, `{min_score}`, `{max_score}`;
- pairwise: `{completion_a}` and `{completion_b}` (required), `{prompt}`.

Filling is one pass of literal substitution, not `str.format`: other braces in a template (a JSON
example, say) are left alone, and a placeholder that appears inside a filled-in text is not
expanded again. A prompt given as messages is written as its single user message's text, or as
`role: content` lines when it has several; a completion as the text of its last assistant message.

It sits in the data layer because tasks build judge prompts too (`tasks/sentiment_judge.py` fills
the pairwise template exactly as `rewards.judge.PairwiseJudge` does).
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

# MT-Bench's single-answer grading prompt (Zheng et al. 2023, FastChat's "single-v1" judge prompt):
# a short explanation, then "Rating: [[k]]" on 1-10. `template=mt_bench` selects it.
MT_BENCH_TEMPLATE = """[Instruction]
Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to the \
user question displayed below. Your evaluation should consider factors such as the helpfulness, relevance, \
accuracy, depth, creativity, and level of detail of the response. Begin your evaluation by providing a short \
explanation. Be as objective as possible. After providing your explanation, you must rate the response on a \
scale of 1 to 10 by strictly following this format: "[[rating]]", for example: "Rating: [[5]]".

[Question]
{prompt}

[The Start of Assistant's Answer]
{completion}
[The End of Assistant's Answer]"""

BUILTIN_TEMPLATES = {"mt_bench": MT_BENCH_TEMPLATE}
REQUIRED = {"pointwise": ("{completion}",), "pairwise": ("{completion_a}", "{completion_b}")}
DEFAULTS = {"pointwise": POINTWISE_TEMPLATE, "pairwise": PAIRWISE_TEMPLATE}
_PLACEHOLDER = re.compile(r"\{(prompt|completion|completion_a|completion_b|min_score|max_score)\}")


def load_template(path: str | None, kind: str) -> str:
    """The default template of `kind` ('pointwise' or 'pairwise') for None, else the file's text, checked."""
    if path is None or path == "":
        return DEFAULTS[kind]
    if str(path) in BUILTIN_TEMPLATES and kind == "pointwise":
        return BUILTIN_TEMPLATES[str(path)]
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



_NUMBER = r"(-?\d+(?:\.\d+)?)"
_SCORE_PATTERNS = (re.compile(r"\[\[\s*" + _NUMBER + r"\s*\]\]"),  # MT-Bench's "Rating: [[7]]"
                   re.compile(r"(?i:score|rating)\s*(?:is|of)?\s*[:=]?\s*" + _NUMBER), re.compile(r"^\s*" + _NUMBER))
_VERDICT_PATTERNS = (
    re.compile(r"^[\s(\[\"'*]*([AB])[\s)\]\"'*]*[.!]?\s*$"),  # the whole answer is the letter
    re.compile(r"\[\[([AB])\]\]"),
    re.compile(r"(?i:answer|verdict|winner|choice|better|best)(?:\s+(?i:response|output))?(?:\s+is)?\s*[:=]?\s*\(?([AB])\b"),
    re.compile(r"^\s*(?i:response|output)?\s*\(?([AB])(?:$|[\s]*[.,:;!)\n])"),  # "A.", "B\n...", "Response A is"
    re.compile(r"^\s*(?i:response|output)\s*\(?([AB])\b"),
)


def parse_score(text: str, min_score: float, max_score: float) -> float | None:
    """(s − min)/(max − min) for the score s in `text` ("[[7]]", "Score: 7", "Rating: 7" or a leading number, in
    that order of precedence), None if absent or out of range."""
    for pattern in _SCORE_PATTERNS:
        match = pattern.search(text)
        if match:
            value = float(match.group(1))
            return (value - min_score) / (max_score - min_score) if min_score <= value <= max_score else None
    return None


def parse_verdict(text: str) -> str | None:
    """'A', 'B' or None: the reply is the letter, or has "[[A]]", "Answer: B", "Response A ..." and the like."""
    for pattern in _VERDICT_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None
