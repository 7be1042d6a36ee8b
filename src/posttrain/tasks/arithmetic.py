"""Arithmetic: multi-digit addition and subtraction, worked column by column, answer in tags.

The user asks "What is 347 + 285?"; the gold completion reasons in <think>…</think> one column at a
time, right to left. Each line starts with what is left of the operands (so the column's digits are
the last ones before the colon: every step is local, which a tiny model can learn), then the column
sum (a two-digit sum carries "+1" into the next line; "<0" borrows, "-1" on the next line), then the
digits written so far after an arrow; the last line restates the result:

    <think>
    347+285: 7+5=12 → 2
    34+28: 4+8+1=13 → 32
    3+2: 3+2+1=6 → 632
    347+285=632
    </think>
    <answer>632</answer>

Subtraction: "532-085: 2-5<0: 12-5=7 → 7", then "53-08: 3-8-1<0: 13-8-1=4 → 47", ...

Difficulty (see `make_problem`): 1 = two digits and one, 2 = two digits and two, 3 = three digits
and two or three, 4 = three operands of two or three digits (two column computations in a row).
Results are never negative. Rewards: `accuracy` (the answer equals the gold answer) and `format` (one <think>
block followed by one <answer> block and nothing else); the headline score is accuracy.

`worked_solution(..., slip_prob=p)` writes a sloppy solution (forgotten carries, off-by-one digits,
carried through to a wrong answer); the pretraining corpus uses it, the task's splits never do.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from posttrain.data.values import completion_text
from posttrain.tasks.base import Task, chat_row

DIFFICULTIES = (1, 2, 3, 4)
ARROW = "→"
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FORMAT = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)
_INT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Problem:
    operands: tuple[int, ...]
    ops: tuple[str, ...]  # len(operands) - 1 of "+" / "-"
    difficulty: int

    @property
    def expression(self) -> str:
        parts = [str(self.operands[0])]
        for op, x in zip(self.ops, self.operands[1:]):
            parts += [op, str(x)]
        return " ".join(parts)

    @property
    def question(self) -> str:
        return f"What is {self.expression}?"

    @property
    def answer(self) -> int:
        value = self.operands[0]
        for op, x in zip(self.ops, self.operands[1:]):
            value = value + x if op == "+" else value - x
        return value


def _number(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1), 10**digits - 1)


def make_problem(rng: random.Random, difficulty: int) -> Problem:
    """A random problem of the given difficulty (1-4); results and intermediate results are >= 0.

    1: two digits and one digit; 2: two digits and two; 3: three digits and two or three;
    4: three operands of two or three digits. The ladder starts where the embedded model is
    mostly right and ends where it is mostly wrong, so post-training has room to show."""
    if difficulty in (1, 2, 3):
        a_digits, b_digits = {1: (2, 1), 2: (2, 2), 3: (3, rng.randint(2, 3))}[difficulty]
        a, b = _number(rng, a_digits), _number(rng, b_digits)
        op = rng.choice("+-")
        if op == "-" and a < b:
            a, b = b, a
        return Problem((a, b), (op,), difficulty)
    if difficulty == 4:
        operands = [_number(rng, rng.randint(2, 3)) for _ in range(3)]
        ops, value = [], operands[0]
        for i in (1, 2):
            op = rng.choice("+-")
            if op == "-" and operands[i] > value:
                op = "+"
            value = value + operands[i] if op == "+" else value - operands[i]
            ops.append(op)
        return Problem(tuple(operands), tuple(ops), difficulty)
    raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty}")


def _slip(rng: random.Random | None, slip_prob: float) -> bool:
    return rng is not None and slip_prob > 0 and rng.random() < slip_prob


def _columns(a: int, b: int, op: str, rng=None, slip_prob=0.0) -> tuple[list[str], int]:
    """Column addition or subtraction of a and b (a >= b for "-"), one line per column.

    Each line starts with what is left of the two (zero-padded) operands, so the digits of the column
    are the last digits just before it; a sum of 10 or more means "+1" on the next line, a "<0" means
    a borrow, "-1" on the next line. The digits written so far follow the arrow.
    """
    n = max(len(str(a)), len(str(b)))
    top, bottom = str(a).zfill(n), str(b).zfill(n)
    lines, carry, written = [], 0, ""
    for i in range(n, 0, -1):
        x, y = int(top[i - 1]), int(bottom[i - 1])
        if op == "+":
            expr = f"{x}+{y}" + ("+1" if carry else "")
            total = x + y + carry
            if _slip(rng, slip_prob):  # an addition slip
                total += 1 if total % 10 == 0 else -1 if total % 10 == 9 else rng.choice((-1, 1))
            body, digit, carry = f"{expr}={total}", total % 10, total // 10
            if carry and _slip(rng, slip_prob):
                carry = 0  # a forgotten carry
        else:
            expr = f"{x}-{y}" + ("-1" if carry else "")
            value = x - y - carry
            digit, carry = value % 10, int(value < 0)
            if _slip(rng, slip_prob):  # a subtraction slip
                digit = (digit + rng.choice((-1, 1))) % 10
            body = f"{expr}<0: 1{expr}={digit}" if carry else f"{expr}={digit}"
            if carry and _slip(rng, slip_prob):
                carry = 0  # a forgotten borrow
        written = str(digit) + written
        lines.append(f"{top[:i]}{op}{bottom[:i]}: {body} {ARROW} {written}")
    if carry and op == "+":
        written = "1" + written
        lines.append(f"carry 1 {ARROW} {written}")
    result = int(written)
    lines.append(f"{a}{op}{b}={result}")
    return lines, result


def worked_solution(problem: Problem, rng: random.Random | None = None, slip_prob: float = 0.0) -> tuple[str, int]:
    """The <think>…</think><answer>…</answer> completion and the answer it reaches.

    With slip_prob > 0 (and an rng) each column may go wrong; the error is carried through, so the
    reasoning stays self-consistent and the final answer is wrong.
    """
    value = problem.operands[0]
    lines = [problem.expression.replace(" ", "")] if len(problem.operands) > 2 else []
    for op, x in zip(problem.ops, problem.operands[1:]):
        if op == "-" and x > value:  # only reachable after a slip: keep the result non-negative
            op = "+"
        step_lines, value = _columns(value, x, op, rng, slip_prob)
        lines += step_lines
    think = "\n".join(lines)
    return f"<think>\n{think}\n</think>\n<answer>{value}</answer>", value


def make_row(problem: Problem) -> dict:
    text, _ = worked_solution(problem)
    return chat_row(problem.question, text, answer=str(problem.answer), difficulty=problem.difficulty)


def make_example(rng: random.Random) -> tuple[str, dict]:
    problem = make_problem(rng, rng.choice(DIFFICULTIES))
    return problem.question, make_row(problem)


def extract_answer(text: str) -> str | None:
    """The content of the last <answer>…</answer>, stripped; None when there is none."""
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else None


def answers_match(predicted: str | None, gold) -> bool:
    if predicted is None:
        return False
    gold = str(gold).strip()
    predicted = predicted.replace(",", "").strip()
    if _INT.fullmatch(predicted) and _INT.fullmatch(gold):
        return int(predicted) == int(gold)
    return predicted == gold


def accuracy(prompts, completions, answer=None, **columns) -> list[float]:
    """1.0 when the <answer> content equals the gold `answer` column, else 0.0."""
    if answer is None:
        raise ValueError("arithmetic accuracy needs the 'answer' column")
    return [float(answers_match(extract_answer(completion_text(c)), a)) for c, a in zip(completions, answer)]


def format_reward(prompts, completions, **columns) -> list[float]:
    """1.0 for exactly one <think>…</think> followed by exactly one <answer>…</answer>, else 0.0."""
    scores = []
    for c in completions:
        text = completion_text(c)
        ok = _FORMAT.fullmatch(text) is not None and all(text.count(t) == 1 for t in ("<think>", "</think>", "<answer>", "</answer>"))
        scores.append(float(ok))
    return scores


accuracy.reward_range = format_reward.reward_range = (0.0, 1.0)  # declared: the reward-hacking diagnostics read it

TASK = Task(
    name="arithmetic",
    make_example=make_example,
    scorers={"accuracy": accuracy, "format": format_reward},
    headline="accuracy",
    default_max_new_tokens=256,
    description="Multi-digit addition and subtraction; reason in <think>, answer in <answer>.",
)
