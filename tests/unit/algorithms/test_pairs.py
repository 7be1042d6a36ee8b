"""`posttrain pairs`' pieces: pair selection (first_two / max_gap / all_pairs / rso), hard and Bradley-Terry
labels against hand-computed values, and judge labels."""

from __future__ import annotations

import math
import random

import pytest

from posttrain.algorithms.pairs import PRESETS, PairsConfig, bradley_terry_first_wins, make_pairs, select_pairs, statistical_rejection_sample
from posttrain.config import build_config
from posttrain.errors import ConfigError
from posttrain.methods.best_of_n import Candidate, PromptCandidates


def _cands(*rewards, texts=None):
    texts = texts or [f"sample {i}" for i in range(len(rewards))]
    return [Candidate(t, [], r) for t, r in zip(texts, rewards)]


def test_select_pairs_rules():
    c = _cands(0.4, 0.9, None, 0.1, 0.6)
    (a, b), = select_pairs(c, "first_two")[0]
    assert (a.reward, b.reward) == (0.4, 0.9)
    (a, b), = select_pairs(c, "max_gap")[0]  # largest gap 0.9 - 0.1, kept in sampling order; None skipped
    assert (a.reward, b.reward) == (0.9, 0.1)
    assert select_pairs(c, "max_gap", min_gap=0.81) == ([], 1)
    pairs, below = select_pairs(c, "all_pairs", min_gap=0.45)  # gaps of the 6 pairs: .5 .3 .2 .8 .3 .5
    assert [(x.reward, y.reward) for x, y in pairs] == [(0.4, 0.9), (0.9, 0.1), (0.1, 0.6)] and below == 3
    assert select_pairs(_cands(0.5, None), "first_two") == ([], 0)
    with pytest.raises(ConfigError, match="selection must be one of"):
        select_pairs(c, "best_of")


def _groups():
    prompts = [{"prompt": f"p{i}"} for i in range(4)]
    rewards = [(0.2, 0.7), (0.9, 0.3), (0.5, 0.5), (0.6, 0.6)]
    groups = [PromptCandidates(row, _cands(*r, texts=[f"a{i}", f"b{i}"])) for i, (row, r) in enumerate(zip(prompts, rewards))]
    groups[3].candidates[1].text = " a3 "  # identical sides once stripped
    return groups


def test_hard_labels_order_by_reward_and_count_ties():
    rows, counts = make_pairs(_groups(), build_config(PairsConfig, {"labels": "hard"}))
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [("p0", "b0", "a0"), ("p1", "a1", "b1")]
    assert [(r["chosen_reward"], r["rejected_reward"]) for r in rows] == [(0.7, 0.2), (0.9, 0.3)]
    assert counts["ties"] == 1 and counts["identical"] == 1 and counts["pairs"] == 2
    assert counts["mean_gap"] == pytest.approx((0.5 + 0.6) / 2) and counts["reward_agreement"] == 1.0


def test_bradley_terry_labels():
    groups = _groups()[:2]
    hard, _ = make_pairs(groups, build_config(PairsConfig, {"labels": "hard"}))
    huge, _ = make_pairs(groups, build_config(PairsConfig, {"labels": "bradley_terry", "label_beta": 1e9}), seed=3)
    assert huge == hard
    # beta 5, seed 0: the same draws by hand, P(first wins) = sigmoid(5 (r1 - r2))
    rng = random.Random(0)
    expect = [rng.random() < 1 / (1 + math.exp(-5 * (r1 - r2))) for r1, r2 in [(0.2, 0.7), (0.9, 0.3)]]
    rows, counts = make_pairs(groups, build_config(PairsConfig, {"labels": "bradley_terry"}), seed=0)
    assert [r["chosen"] == f"a{i}" for i, r in enumerate(rows)] == expect
    assert counts["reward_agreement"] == sum((r["chosen_reward"] > r["rejected_reward"]) for r in rows) / 2
    assert bradley_terry_first_wins(0.0, 1.0, 1e9, random.Random(0)) is False  # no overflow


def test_judge_labels_follow_the_judge_and_keep_rewards_with_their_text():
    from posttrain.rewards.judge import pairwise_judge

    judge = pairwise_judge(method="logprob")  # the embedded model: untrained, but a real judge
    groups = _groups()[:3]
    rows, counts = make_pairs(groups, build_config(PairsConfig, {"labels": "judge"}), judge)
    p = judge.preferences(["p0", "p1", "p2"], ["a0", "a1", "a2"], ["b0", "b1", "b2"])
    expect = [(f"p{i}", f"a{i}" if pi > 0.5 else f"b{i}") for i, pi in enumerate(p) if pi != 0.5]
    assert [(r["prompt"], r["chosen"]) for r in rows] == expect and counts["ties"] == 3 - len(expect)
    reward_of = {c.text: c.reward for g in groups for c in g.candidates}
    assert all(r["chosen_reward"] == reward_of[r["chosen"]] and r["rejected_reward"] == reward_of[r["rejected"]] for r in rows)


class Uniforms:
    """A scripted stream of U(0, 1) draws, so each accept / reject below is decided by hand."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)


def test_rso_statistical_rejection_sampling_by_hand():
    """Accept y_i with probability exp((r_i − r_max)/β), β = 1, r_max over the candidates still left.
    rewards 0, 1, 2, 0.5: e^−2 = 0.135 (u 0.5: no), e^−1 = 0.368 (u 0.3: yes), e^0 = 1 (u 0.99: yes) -> [1, 2]."""
    assert statistical_rejection_sample([0.0, 1.0, 2.0, 0.5], 2, 1.0, Uniforms(0.5, 0.3, 0.99)) == [1, 2]
    # Pass 1 accepts only the best (u 0.9, 0.9, 0.5); pass 2's r_max is then 1, so y_0 needs u < e^−1 = 0.368,
    # not e^−2 = 0.135: u = 0.2 accepts it.
    assert statistical_rejection_sample([0.0, 1.0, 2.0], 2, 1.0, Uniforms(0.9, 0.9, 0.5, 0.2)) == [2, 0]


def test_rso_limits_are_top_k_and_the_samples_as_drawn():
    """β → 0: top-k-over-N (best-of-N for k = 1), the special case RSO names; β → ∞: every sample accepted in order."""
    rewards = [0.3, 0.9, 0.1, 0.7, 0.5]
    assert sorted(statistical_rejection_sample(rewards, 2, 1e-6, random.Random(0))) == [1, 3]
    assert statistical_rejection_sample(rewards, 3, 1e6, random.Random(0)) == [0, 1, 2]


def test_rso_selection_pairs_accepted_samples_in_order_and_labels_them_by_reward():
    config = build_config(PairsConfig, {**PRESETS["rso"], "rso_samples": 4, "rso_beta": 1e-6})
    group = PromptCandidates({"prompt": "p"}, _cands(0.2, 0.9, 0.4, 0.8, 0.1, 0.6, 0.3, 0.7))
    pairs, _ = select_pairs(group.candidates, "rso", rng=random.Random(0), rso_beta=1e-6, rso_samples=4)
    assert [(a.reward, b.reward) for a, b in pairs] == [(0.9, 0.8), (0.7, 0.6)]  # β → 0: the top 4, one per pass
    rows, counts = make_pairs([group], config)
    assert [(r["chosen_reward"], r["rejected_reward"]) for r in rows] == [(0.9, 0.8), (0.7, 0.6)] and counts["pairs"] == 2


@pytest.mark.parametrize("values", [{"rso_samples": 3}, {"rso_samples": 10}, {"rso_beta": 0.0}])
def test_rso_options_are_checked(values):
    with pytest.raises(ConfigError, match="selection=rso needs rso_beta > 0 and an even rso_samples"):
        build_config(PairsConfig, {**PRESETS["rso"], **values})
