"""The accuracy reward R_acc for math: extract the final answer, compare it with the gold answer.

DeepSeek-R1-Zero (seed 000 L773-802): "after having the final answer output in a predetermined
format, it is judged whether it matches the true answer ... a positive value if it is correct, and
0 or a negative value if it is incorrect". The check is Math-Verify's (seed 004 L199-232:
`verify(gold, answer)`, gold first, "order here is important"); DAPO uses ±1 on integer answers
(seed 003 L2791, L3777), which is `mode=integer:wrong=-1`.
"""

from __future__ import annotations

import json
import math
import re
import threading
from functools import lru_cache
from typing import Callable

from posttrain.data.answers import extract_boxed, extract_hash_answer
from posttrain.errors import ConfigError, UserError
from posttrain.rewards.format import completion_text
from posttrain.rewards.registry import check_choice

MODES = ("verify", "integer", "exact")
EXTRACTS = ("auto", "boxed", "answer_tag", "none")

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# An integer, optionally signed, with optional thousands separators: 1,234 or 1{,}234 or 1\,234.
_INTEGER = re.compile(r"[+-]?(?:\d{1,3}(?:(?:,|\{,\}|\\,)\d{3})+|\d+)")


def extract_answer_tag(text: str) -> str | None:
    """The content of the last `<answer>...</answer>`."""
    found = _ANSWER_TAG.findall(text)
    return found[-1] if found else None


def extract_answer(text: str, extract: str = "auto") -> str | None:
    """The answer text: `boxed`, `answer_tag`, `auto` (the last box, else the last answer tag, else
    GSM8K's `#### N`) or `none` (the whole text). None when nothing is found or it is blank."""
    if extract == "none":
        found = text
    elif extract == "boxed":
        found = extract_boxed(text)
    elif extract == "answer_tag":
        found = extract_answer_tag(text)
    else:
        found = extract_boxed(text)
        found = extract_answer_tag(text) if found is None else found
        found = extract_hash_answer(text) if found is None else found
    return found if found is not None and found.strip() else None


def parse_integer(text) -> int | None:
    """`text` as an integer (sign and thousands separators allowed, `$...$` stripped), else None."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return text
    if isinstance(text, float):
        return int(text) if text.is_integer() else None
    text = str(text).strip().strip("$").strip()
    if not _INTEGER.fullmatch(text):
        return None
    return int(re.sub(r"\{,\}|\\,|,", "", text))


def _math_parse(text: str, wrap: bool, timeout: int | None) -> list:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    # Bare LaTeX or a number becomes `$...$`, which math-verify reads as one expression; text that
    # already has math delimiters or a box goes in as is, for math-verify's own extraction.
    if wrap and "$" not in text and "\\boxed" not in text and "\\fbox" not in text:
        text = f"${text.strip()}$"
    return parse(text, extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()], parsing_timeout=timeout)


@lru_cache(maxsize=4096)
def _parse_gold(text: str, timeout: int | None) -> tuple:
    return tuple(_math_parse(text, True, timeout))  # G completions share one gold: parse it once


def check_answer(golds: list[str], answer: str | None, wrap: bool = True, timeout: int | None = None) -> str:
    """Math-Verify's verdict on one answer: "correct", "wrong", "missing" (no answer, or one it cannot
    parse) or "no_gold" (no gold it can parse). `verify(gold, answer)`: gold first (seed 004 L226-227)."""
    from math_verify import verify

    parsed_golds = [p for g in golds for p in _parse_gold(g, timeout)]
    if not parsed_golds:
        return "no_gold"
    parsed = _math_parse(answer, wrap, timeout) if answer is not None else []
    if not parsed:
        return "missing"
    return "correct" if verify(parsed_golds, parsed, timeout_seconds=timeout) else "wrong"


class VerifierProcess:
    """A child Python that runs `check_answer` in its main thread, where math-verify's signal.alarm
    timeouts work. Rewards called from worker threads (RewardFunctions' pool) use it: without a
    timeout an answer like 9^{9^{9^{9}}} would hang the thread, and with it math-verify raises
    there. A child that outlives `deadline(timeout)` is killed (that answer scores wrong) and
    replaced on the next call."""

    def __init__(self):
        self._proc, self._lock = None, threading.Lock()

    @staticmethod
    def deadline(timeout: int, n_golds: int) -> float:
        return 4.0 * timeout * (n_golds + 1) + 10.0  # ≥ math-verify's own per-step timeouts, summed

    def check(self, golds: list[str], answer: str | None, wrap: bool, timeout: int) -> str:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            self._proc.stdin.write(json.dumps([golds, answer, wrap, timeout]) + "\n")
            self._proc.stdin.flush()
            line = self._read_line(self.deadline(timeout, len(golds)))
            if line is None:
                self.close()
                return "wrong"
            return json.loads(line)

    def _start(self) -> None:
        import os
        import subprocess
        import sys

        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds posttrain/
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]))
        self._proc = subprocess.Popen([sys.executable, "-c", "from posttrain.rewards.math import serve; serve()"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        if self._read_line(120.0) != "ready":
            self.close()
            raise UserError("math_accuracy: the math-verify child process did not start; check that "
                            f"{sys.executable} can import posttrain and math_verify")

    def _read_line(self, seconds: float) -> str | None:
        import select

        ready, _, _ = select.select([self._proc.stdout], [], [], seconds)
        line = self._proc.stdout.readline() if ready else ""
        return line.strip() or None

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


def serve() -> None:
    """The child's loop: one JSON request [golds, answer, wrap, timeout] per stdin line, one verdict
    per stdout line."""
    import sys

    out, sys.stdout = sys.stdout, sys.stderr  # stray prints must not corrupt the replies
    check_answer(["1"], "1", True, 5)  # import and warm up before "ready", so start-up is not charged to a check

    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        golds, answer, wrap, timeout = json.loads(line)
        out.write(json.dumps(check_answer(golds, answer, wrap, timeout)) + "\n")
        out.flush()


_VERIFIER = VerifierProcess()


def _is_missing_gold(gold) -> bool:
    if gold is None or (isinstance(gold, float) and math.isnan(gold)):
        return True
    if isinstance(gold, (list, tuple)):
        return not gold or all(_is_missing_gold(g) for g in gold)
    return isinstance(gold, str) and not gold.strip()


def _number(value, key: str, allow_none: bool = False) -> float | None:
    if allow_none and (value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null", "~"))):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"math_accuracy: {key} must be a number{' or none' if allow_none else ''}, got {value!r}")
    return float(value)


def math_accuracy(mode: str = "verify", extract: str = "auto", column: str = "answer", correct: float = 1.0,
                  wrong: float = 0.0, missing=None, timeout: int = 5) -> Callable:
    """Built-in reward `math_accuracy`: `correct` when the completion's final answer equals the gold
    answer, `wrong` when it does not, `missing` when it has no answer (None: same as `wrong`).

    - extract: where the answer is. `auto` the last `\\boxed{...}`/`\\fbox{...}` (nested braces kept),
      else the last `<answer>...</answer>`, else GSM8K's `#### N`; `boxed`; `answer_tag`; `none` the whole completion (in
      `verify` mode math-verify then finds the answer itself: a box, "final answer is", the last math).
    - mode: `verify` Math-Verify: `verify(parse(gold), parse(answer))` (gold first, as its API
      requires); the answer and a gold without `$`/box are parsed as `$...$` with LaTeX and plain-
      expression extraction, so 1/2, 0.5 and \\frac{1}{2} agree, as do \\{1,2\\} and \\{2,1\\}.
      `integer`: the answer is an integer (sign, thousands separators 1,234 allowed) equal to the
      gold's (DAPO). `exact`: the answer equals str(gold) after stripping surrounding whitespace.
    - column: the gold column; `answer` falls back to `solution` (TRL's name) when absent. A gold
      that is a list counts as any-of. A sample with no gold (None, NaN, "") gets None (does not
      apply), and so does a gold math-verify cannot parse (TRL's accuracy_reward does the same).
    - Missing answer: nothing extracted, a blank answer, an answer math-verify cannot parse, or (in
      `integer` mode) an answer that is not an integer. `wrong=-1` gives the ±1 convention, where a
      missing answer is also −1 unless `missing=` says otherwise.
    - timeout: seconds per math-verify parse or comparison (past it: missing or wrong); 0 for none.
      math-verify times out with signal.alarm, which works only in the main thread, so a call from
      another thread (RewardFunctions runs several rewards in a thread pool) checks in a child
      process (`VerifierProcess`) that is killed if it hangs. With timeout=0 it always runs in-process.
    """
    check_choice("math_accuracy", "mode", mode, MODES)
    check_choice("math_accuracy", "extract", extract, EXTRACTS)
    if not isinstance(column, str) or not column:
        raise ConfigError(f"math_accuracy: column must name the gold-answer column, got {column!r}")
    correct, wrong = _number(correct, "correct"), _number(wrong, "wrong")
    missing = _number(missing, "missing", allow_none=True)
    missing = wrong if missing is None else missing
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise ConfigError(f"math_accuracy: timeout must be a whole number of seconds (0: none), got {timeout!r}")

    def score(text: str, gold) -> float | None:
        if _is_missing_gold(gold):
            return None
        golds = [g for g in (gold if isinstance(gold, (list, tuple)) else [gold]) if not _is_missing_gold(g)]
        answer = extract_answer(text, extract)
        if mode == "verify":
            return _verify_score(answer, golds, text)
        gold_values = [_integer_gold(g) for g in golds] if mode == "integer" else [str(g).strip() for g in golds]
        if answer is None:
            return missing
        value = parse_integer(answer) if mode == "integer" else answer.strip()
        if value is None:
            return missing
        return correct if value in gold_values else wrong

    def _verify_score(answer, golds, text) -> float | None:
        golds = [str(g) for g in golds]
        answer, wrap = (text, False) if extract == "none" else (answer, True)
        if timeout and threading.current_thread() is not threading.main_thread():
            verdict = _VERIFIER.check(golds, answer, wrap, timeout)
        else:
            verdict = check_answer(golds, answer, wrap, timeout or None)
        return {"correct": correct, "wrong": wrong, "missing": missing, "no_gold": None}[verdict]

    def math_accuracy_reward(prompts=None, completions=(), **columns) -> list[float | None]:
        if column in columns:
            golds = columns[column]
        elif column == "answer" and "solution" in columns:
            golds = columns["solution"]
        else:
            have = ", ".join(sorted(k for k in columns if k != "completion_ids")) or "(none)"
            raise UserError(f"math_accuracy needs the gold-answer column '{column}'"
                            f"{' (or solution)' if column == 'answer' else ''}; the data has: {have}. "
                            "Set math_accuracy:column=NAME")
        return [score(completion_text(c), g) for c, g in zip(completions, golds)]

    math_accuracy_reward.__name__ = "math_accuracy"
    values = (correct, wrong, missing)
    if max(values) > min(values):
        math_accuracy_reward.reward_range = (min(values), max(values))  # its declared max: share at max, scaled gaps
    return math_accuracy_reward


def _integer_gold(gold) -> int:
    value = parse_integer(gold)
    if value is None:
        raise UserError(f"math_accuracy mode=integer: the gold answer {gold!r} is not an integer; "
                        "use mode=verify for non-integer answers")
    return value
