"""Where a final answer sits in a math text: the last `\\boxed{...}`, or GSM8K's `#### 42` line.

Both the benchmark loaders (`tasks.benchmarks`, which take the gold answer out of a reference
solution) and the `math_accuracy` reward (which takes the model's answer out of a completion) read
answers, so the extraction lives here, in the data layer below both.
"""

from __future__ import annotations

import re

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_HASH_ANSWER = re.compile(r"####\s*(.+)")


def extract_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`) whose braces close; nested braces are
    kept and escaped braces `\\{ \\}` do not count."""
    found = None
    for match in _BOX.finditer(text):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            if text[i] == "\\":
                i += 2  # an escaped character, e.g. \{ in a set
                continue
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found = text[match.end():i - 1]
    return found


def extract_hash_answer(text: str) -> str | None:
    """GSM8K's final answer: what follows the last `####` on its line, without thousands commas or
    `$` ("#### $1,234." -> "1234"); None when there is no `####` line or it is blank."""
    found = _HASH_ANSWER.findall(text)
    if not found:
        return None
    answer = found[-1].strip().strip("$").rstrip(".").replace(",", "").strip()
    return answer or None
