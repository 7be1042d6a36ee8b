"""The synthetic pretraining corpus of the embedded model, made by the task code itself.

Two kinds of conversations (rendered later through the chat template):

- arithmetic problems with worked solutions, drawn only from the train side of the task's split (the
  held-out problems never appear). The corpus is deliberately imperfect so post-training has room to
  work: harder difficulties are rarer than in the task's train split, and a fraction of the worked
  solutions are sloppy (a forgotten carry, an off-by-one column), carried through to a wrong answer;
- movie reviews of every shade, for titles on the train side of the sentiment split.

Everything is a pure function of the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from posttrain.tasks import arithmetic, sentiment
from posttrain.tasks.base import split_of


@dataclass
class CorpusSpec:
    n_arithmetic: int = 20000
    n_sentiment: int = 10000
    difficulty_weights: dict[int, float] = field(default_factory=lambda: {1: 0.4, 2: 0.3, 3: 0.2, 4: 0.1})
    sloppy_fraction: float = 0.3  # share of worked solutions written with slips
    slip_prob: float = 0.3  # per column, within a sloppy solution


def _messages(user: str, assistant: str) -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def arithmetic_conversations(spec: CorpusSpec, rng: random.Random) -> list[dict]:
    """[{"messages": [...], "difficulty": d, "correct": bool}] drawn from the train side only."""
    levels, weights = zip(*sorted(spec.difficulty_weights.items()))
    out = []
    while len(out) < spec.n_arithmetic:
        problem = arithmetic.make_problem(rng, rng.choices(levels, weights)[0])
        if split_of(problem.question) != "train":
            continue
        sloppy = rng.random() < spec.sloppy_fraction
        text, value = arithmetic.worked_solution(problem, rng if sloppy else None, spec.slip_prob if sloppy else 0.0)
        out.append({"messages": _messages(problem.question, text), "difficulty": problem.difficulty,
                    "correct": value == problem.answer})
    return out


def sentiment_conversations(spec: CorpusSpec, rng: random.Random) -> list[dict]:
    out = []
    while len(out) < spec.n_sentiment:
        title = sentiment.make_title(rng)
        if split_of(title) != "train":
            continue
        out.append({"messages": _messages(sentiment.review_prompt(title), sentiment.write_review(rng, title))})
    return out


def build_corpus(spec: CorpusSpec, seed: int) -> list[dict]:
    """All conversations, shuffled; a pure function of (spec, seed)."""
    rng = random.Random(f"embedded-corpus-{seed}")
    docs = arithmetic_conversations(spec, rng) + sentiment_conversations(spec, rng)
    rng.shuffle(docs)
    return docs
