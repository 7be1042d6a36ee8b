"""Best-of-n building blocks of rejection sampling: `select_best` (best / threshold, min_reward, max_per_prompt)
and `sample_and_score` grouping n samples per prompt, checked independently on the embedded model."""

import pytest

from conftest import ANSWER_TAG as ANSWER
from posttrain.errors import ConfigError
from posttrain.methods.best_of_n import Candidate, PromptCandidates, mean_reward, sample_and_score, select_best


def _group(name: str, rewards) -> PromptCandidates:
    return PromptCandidates({"prompt": name}, [Candidate(f"{name}{i}", [i], r) for i, r in enumerate(rewards)])


def _texts(kept) -> list[str]:
    return [c.text for _, c in kept]


def test_select_best_keeps_the_first_top_sample_above_min_reward():
    groups = [_group("a", [0.2, 0.9, 0.9, None]), _group("b", [None, None]), _group("c", [0.1, 0.3])]
    assert _texts(select_best(groups, "best")) == ["a1", "c1"]  # tie 0.9/0.9: the first; all-None b: nothing
    assert _texts(select_best(groups, "best", min_reward=0.5)) == ["a1"]  # c's best (0.3) is below 0.5
    assert _texts(select_best(groups, "best", min_reward=0.9)) == ["a1"]  # >=, not >
    assert [row["prompt"] for row, _ in select_best(groups, "best")] == ["a", "c"]


def test_select_best_threshold_keeps_every_passing_sample_highest_first():
    groups = [_group("a", [1.0, 0.0, 1.0, 1.0]), _group("b", [0.5, 2.0, 1.5, None]), _group("c", [0.0, 0.99])]
    assert _texts(select_best(groups, "threshold", threshold=1.0)) == ["a0", "a2", "a3", "b1", "b2"]
    assert _texts(select_best(groups, "threshold", threshold=1.0, max_per_prompt=2)) == ["a0", "a2", "b1", "b2"]
    assert _texts(select_best(groups, "threshold", threshold=0.5, max_per_prompt=1)) == ["a0", "b1", "c1"]
    assert mean_reward(groups) == pytest.approx((3 + 0.5 + 2 + 1.5 + 0 + 0.99) / 9)  # the None is left out


def test_select_best_rejects_unknown_rule():
    with pytest.raises(ConfigError, match="selection must be one of best, threshold"):
        select_best([_group("a", [1.0])], "worst")


def test_sample_and_score_groups_n_samples_and_matches_an_independent_check():
    from posttrain.tasks.sources import load_rows
    from posttrain.generation import SamplingParams
    from posttrain.models.loading import load_causal_lm, load_tokenizer
    from posttrain.rewards import RewardFunctions

    rows = load_rows("task:arithmetic:train:6")
    tokenizer, model = load_tokenizer("embedded"), load_causal_lm("embedded")
    rewards = RewardFunctions.resolve(["task:arithmetic:accuracy"], "task:arithmetic")
    groups = sample_and_score(model, tokenizer, rows, rewards, 3, SamplingParams(max_new_tokens=160, seed=0), batch_size=4)
    assert [g.row for g in groups] == rows and all(len(g.candidates) == 3 for g in groups)
    for g in groups:
        for c in g.candidates:
            found = ANSWER.search(c.text)
            assert c.reward == float(found is not None and found.group(1).strip() == g.row["answer"])
            assert tokenizer.decode(c.completion_ids, skip_special_tokens=True).startswith(c.text[:20])
    assert len({c.text for g in groups for c in g.candidates}) > 6  # sampled, not 3 copies of one greedy text
