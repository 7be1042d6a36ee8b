"""Process-reward data for the PRM tests (tests/unit/algorithms/test_prm.py, tests/e2e/test_prm.py,
test_train_fsdp2_parity.py): worked arithmetic solutions labelled step by step, and the stage's config."""

from __future__ import annotations

import random


def prm_config(**values):
    from posttrain.algorithms.prm import PRMConfig
    from posttrain.config import build_config

    defaults = dict(dataset="unused.jsonl", max_length=256, batch_size=16, logging_steps=8, device="cpu",
                    lr_scheduler="constant")
    return build_config(PRMConfig, {**defaults, **values})


def think_lines(text: str) -> list[str]:
    return text.split("<think>\n", 1)[1].split("\n</think>", 1)[0].split("\n")


def stepwise_rows(n: int, seed: int) -> list[dict]:
    """Worked arithmetic solutions as steps. A sloppy solution (worked_solution with slips) is bad
    from its first wrong line on (Math-Shepherd's labels: it can no longer reach the answer), and
    its writer hedges ("maybe") once slipped: a cue a tiny random model can learn at the step's own
    separator; the arithmetic itself it cannot."""
    from posttrain.tasks.arithmetic import make_problem, worked_solution

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        problem = make_problem(rng, rng.choice((1, 2, 3)))
        clean = think_lines(worked_solution(problem)[0])
        steps = think_lines(worked_solution(problem, rng, slip_prob=0.25)[0]) if rng.random() < 0.5 else clean
        first = next((k for k, (a, b) in enumerate(zip(steps, clean)) if a != b), min(len(steps), len(clean)))
        rows.append({"prompt": problem.question, "completions": [("maybe " if k >= first else "") + s for k, s in enumerate(steps)],
                     "labels": [k < first for k in range(len(steps))]})
    return rows
