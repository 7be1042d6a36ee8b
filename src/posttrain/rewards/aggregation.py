"""Which item is best, from pairwise judgments: the Condorcet, Copeland and Borda winners (seed 002 L46-71).

Everything reads a preference matrix P with P[i][j] = P(b_i ≻ b_j), the probability (or the
fraction of judgments) that item i beats item j; the diagonal is ignored. `win_rates` makes one
from counts of wins. A missing judgment (None) counts as 0.5, no information either way.

Seed 002's definitions, for K items:

- Condorcet winner: b_i with P(b_i ≻ b_j) ≥ 0.5 for every j ≠ i. There may be none (a cycle, as in
  rock-paper-scissors); with ties (P = 0.5) there may be several.
- Copeland winner: argmax_i Σ_{j≠i} 1{P(b_i ≻ b_j) > 0.5}, the number of strict pairwise wins.
- Borda winner: argmax_i Σ_{j≠i} P(b_i ≻ b_j), the summed win probability.

Under Bradley–Terry (P = σ(r_i − r_j)) all three pick the item with the largest r (seed 002: "three
winners are consistent"); on judgments that no BT model explains they can disagree. Ties between
items with equal scores go to the smallest index, like `argmax`.
"""

from __future__ import annotations

from typing import Callable, Sequence

RULES = ("copeland", "borda", "condorcet")


def _matrix(p: Sequence[Sequence[float | None]]) -> list[list[float]]:
    k = len(p)
    if any(len(row) != k for row in p):
        raise ValueError(f"a preference matrix must be square, got {k} rows of lengths {[len(r) for r in p]}")
    return [[0.5 if v is None else float(v) for v in row] for row in p]


def win_rates(wins: Sequence[Sequence[float]]) -> list[list[float | None]]:
    """P[i][j] = W[i][j] / (W[i][j] + W[j][i]) from counts W[i][j] of judgments that i beat j (None: never compared)."""
    w = _matrix(wins)
    return [[None if i == j or w[i][j] + w[j][i] == 0 else w[i][j] / (w[i][j] + w[j][i])
             for j in range(len(w))] for i in range(len(w))]


def condorcet_winners(p) -> list[int]:
    """Every i with P(b_i ≻ b_j) ≥ 0.5 for all j ≠ i."""
    m = _matrix(p)
    return [i for i in range(len(m)) if all(m[i][j] >= 0.5 for j in range(len(m)) if j != i)]


def condorcet_winner(p) -> int | None:
    """The Condorcet winner (the smallest index if ties make several), None if there is none."""
    winners = condorcet_winners(p)
    return winners[0] if winners else None


def copeland_scores(p) -> list[int]:
    """Σ_{j≠i} 1{P(b_i ≻ b_j) > 0.5} for each i."""
    m = _matrix(p)
    return [sum(m[i][j] > 0.5 for j in range(len(m)) if j != i) for i in range(len(m))]


def borda_scores(p) -> list[float]:
    """Σ_{j≠i} P(b_i ≻ b_j) for each i."""
    m = _matrix(p)
    return [sum(m[i][j] for j in range(len(m)) if j != i) for i in range(len(m))]


def _argmax(scores) -> int | None:
    return max(range(len(scores)), key=lambda i: (scores[i], -i)) if len(scores) else None


def copeland_winner(p) -> int | None:
    return _argmax(copeland_scores(p))


def borda_winner(p) -> int | None:
    return _argmax(borda_scores(p))


def preference_matrix(candidates: Sequence, compare: Callable) -> list[list[float | None]]:
    """P from `compare(a, b) -> P(a ≻ b) | None`, called once per unordered pair; P[j][i] = 1 − P[i][j]."""
    k = len(candidates)
    p: list[list[float | None]] = [[None] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1, k):
            value = compare(candidates[i], candidates[j])
            p[i][j] = None if value is None else float(value)
            p[j][i] = None if value is None else 1.0 - float(value)
    return p


def best_of_n(candidates: Sequence, compare: Callable, rule: str = "copeland") -> int | None:
    """The index of the best candidate under `rule` ('copeland', 'borda' or 'condorcet'), judged pairwise.

    `compare(a, b)` returns P(a ≻ b) (e.g. a pairwise judge with position swap); it is called once per
    pair, C(n, 2) calls. 'condorcet' returns None when the judgments have no Condorcet winner.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    if len(candidates) <= 1:
        return 0 if candidates else None
    p = preference_matrix(candidates, compare)
    return {"copeland": copeland_winner, "borda": borda_winner, "condorcet": condorcet_winner}[rule](p)
