"""Scripted people: labels by a reward, with ties by margin; with beta > 0 a Bradley–Terry / Plackett–Luce
draw whose pairwise odds are σ(β Δr), the same for a person and an item whatever order the page shows."""

from __future__ import annotations

import math
import random

from posttrain.annotate.scripted import gumbel_noise, person_noise, ranking_by_reward


def test_exact_labels_follow_the_reward_and_a_small_gap_is_a_tie():
    assert ranking_by_reward([0.9, 0.1], "pairwise") == [0, 1]
    assert ranking_by_reward([0.1, 0.9], "pairwise") == [1, 0]
    assert ranking_by_reward([0.50, 0.52], "pairwise", tie_margin=0.05) == [0, 0]
    assert ranking_by_reward([0.2, 0.9, 0.5], "ranking") == [2, 0, 1]


def test_a_noisy_person_prefers_a_with_probability_sigmoid_beta_gap():
    beta, gap, draws = 5.0, 0.2, 20000
    rng = random.Random(0)
    first = sum(ranking_by_reward([gap, 0.0], "pairwise", beta=beta, noise=gumbel_noise(2, rng)) == [0, 1] for _ in range(draws))
    expected = 1 / (1 + math.exp(-beta * gap))  # 0.731
    assert abs(first / draws - expected) < 4 * math.sqrt(expected * (1 - expected) / draws)


def test_a_persons_draw_depends_on_the_completion_not_on_where_it_is_shown():
    texts = ["one", "two", "three"]
    noise = person_noise(7, "ana", 3, texts)
    assert person_noise(7, "ana", 3, texts[::-1]) == noise[::-1]
    assert person_noise(7, "ben", 3, texts) != noise and person_noise(8, "ana", 3, texts) != noise
    ranks = ranking_by_reward([0.1, 0.5, 0.3], "ranking", beta=5.0, noise=noise)
    assert sorted(ranks) == [0, 1, 2]


def test_the_same_text_twice_is_a_tie_for_a_noisy_person_whatever_the_order_shown():
    noise = person_noise(0, "a", 1, ["", ""])  # the same (seed, person, item, text): the same draw
    assert noise[0] == noise[1]
    assert ranking_by_reward([0.0, 0.0], "pairwise", beta=5.0, noise=noise) == [0, 0]
