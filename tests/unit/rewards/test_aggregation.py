"""Condorcet, Copeland and Borda winners (seed 002 L46-71) on hand-made tournaments, and best-of-n."""

from __future__ import annotations

import math
import random

import pytest

from posttrain.rewards.aggregation import (
    best_of_n, borda_scores, borda_winner, condorcet_winner, condorcet_winners, copeland_scores, copeland_winner,
    preference_matrix, win_rates,
)

N = None  # the ignored diagonal


def test_rock_paper_scissors_has_no_condorcet_winner():
    # rock beats scissors, scissors beat paper, paper beats rock
    p = [[N, 0.0, 1.0],
         [1.0, N, 0.0],
         [0.0, 1.0, N]]
    assert condorcet_winner(p) is None and condorcet_winners(p) == []
    assert copeland_scores(p) == [1, 1, 1] and borda_scores(p) == [1.0, 1.0, 1.0]
    assert copeland_winner(p) == 0 and borda_winner(p) == 0  # a three-way tie goes to the first index
    assert best_of_n(["rock", "paper", "scissors"], lambda a, b: {("rock", "paper"): 0.0, ("rock", "scissors"): 1.0,
                                                                  ("paper", "scissors"): 0.0}[a, b], "condorcet") is None


def test_copeland_and_borda_disagree():
    # item 0 narrowly beats both others (the Condorcet and Copeland winner); item 1 crushes item 2,
    # so its summed win probability is largest: Copeland 2, 1, 0; Borda 1.2, 1.39, 0.41.
    p = [[N, 0.6, 0.6],
         [0.4, N, 0.99],
         [0.4, 0.01, N]]
    assert copeland_scores(p) == [2, 1, 0]
    assert borda_scores(p) == pytest.approx([1.2, 1.39, 0.41])
    assert condorcet_winner(p) == 0 and copeland_winner(p) == 0 and borda_winner(p) == 1


def test_ties_follow_the_seed_inequalities():
    # Condorcet uses >= 0.5, so a tie keeps both tied items winners; Copeland counts only strict wins (> 0.5).
    p = [[N, 0.5, 0.7],
         [0.5, N, 0.9],
         [0.3, 0.1, N]]
    assert condorcet_winners(p) == [0, 1] and condorcet_winner(p) == 0
    assert copeland_scores(p) == [1, 1, 0] and copeland_winner(p) == 0
    assert borda_scores(p) == pytest.approx([1.2, 1.4, 0.4]) and borda_winner(p) == 1
    everyone_ties = [[N, 0.5], [0.5, N]]
    assert condorcet_winners(everyone_ties) == [0, 1] and copeland_scores(everyone_ties) == [0, 0]
    # a missing judgment counts as 0.5
    assert borda_scores([[N, None], [None, N]]) == [0.5, 0.5]


def test_win_rates_from_counts():
    wins = [[0, 3, 1],
            [1, 0, 0],
            [1, 0, 0]]  # 0 beat 1 three times out of four; 1 and 2 never met
    p = win_rates(wins)
    assert p[0][1] == 0.75 and p[1][0] == 0.25 and p[0][2] == 0.5 and p[1][2] is None and p[0][0] is None
    assert condorcet_winner(p) == 0


def test_bradley_terry_preferences_make_all_three_winners_agree():
    """Seed 002: under BT, P = sigma(r_i - r_j), the three winners coincide (the argmax of r)."""
    rng = random.Random(0)
    for _ in range(50):
        k = rng.randint(2, 7)
        r = [rng.gauss(0, 2) for _ in range(k)]
        p = [[1 / (1 + math.exp(-(r[i] - r[j]))) for j in range(k)] for i in range(k)]
        best = max(range(k), key=r.__getitem__)
        assert condorcet_winner(p) == copeland_winner(p) == borda_winner(p) == best


def test_best_of_n_calls_compare_once_per_pair():
    quality = {"a": 1.0, "b": 3.0, "c": 2.0, "d": 0.0}
    calls = []

    def compare(x, y):
        calls.append((x, y))
        return 1.0 if quality[x] > quality[y] else 0.0

    candidates = list(quality)
    for rule in ("copeland", "borda", "condorcet"):
        calls.clear()
        assert best_of_n(candidates, compare, rule) == 1
        assert len(calls) == 6 and len(set(map(frozenset, calls))) == 6
    assert best_of_n(["only"], compare) == 0 and best_of_n([], compare) is None
    p = preference_matrix(candidates, compare)
    assert p[1][0] == 1.0 and p[0][1] == 0.0 and p[2][2] is None
    with pytest.raises(ValueError, match="rule must be one of"):
        best_of_n(candidates, compare, "plurality")
