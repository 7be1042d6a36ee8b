"""The rejection stage's presets: ReST-EM's filter keeps correct answers only (its reward is the task's
0/1 accuracy, not accuracy + format), checked on hand-built arithmetic completions; ReST's Improve steps
filter one Grow step's samples with rising thresholds."""

from __future__ import annotations

import pytest

from posttrain.algorithms.rejection import PRESETS, RejectionConfig
from posttrain.config import build_config
from posttrain.errors import ConfigError
from posttrain.methods.best_of_n import Candidate, PromptCandidates, select_best
from posttrain.rewards import RewardFunctions
from posttrain.tasks import get_task


def _candidates(rewards, row: dict, texts: list[str]) -> PromptCandidates:
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    result = rewards([row["prompt"]] * len(texts), completions, {"answer": [row["answer"]] * len(texts)})
    return PromptCandidates(row, [Candidate(t, [], r) for t, r in zip(texts, result.total)])


def test_rest_em_preset_keeps_correct_answers_and_drops_well_formatted_wrong_ones():
    row = get_task("arithmetic").rows("test", 1)[0]
    correct = row["completion"][0]["content"]
    wrong = correct.replace(f"<answer>{row['answer']}</answer>", f"<answer>{int(row['answer']) + 1}</answer>")
    unformatted = f"The answer is <answer>{row['answer']}</answer>"  # correct, without the <think> block
    config = build_config(RejectionConfig, {**PRESETS["rest_em"], "dataset": "task:arithmetic"})
    rewards = RewardFunctions.from_options(config, config.dataset)
    group = _candidates(rewards, row, [wrong, correct, unformatted])
    assert [c.reward for c in group.candidates] == [0.0, 1.0, 1.0]
    kept = select_best([group], config.selection, min_reward=config.min_reward, threshold=config.threshold,
                       max_per_prompt=config.max_per_prompt)
    assert [c.text for _, c in kept] == [correct, unformatted]
    # the default reward, accuracy + format, puts the well-formatted wrong answer at the same 1.0
    summed = _candidates(RewardFunctions.resolve(["task"], "task:arithmetic"), row, [wrong, correct, unformatted])
    assert [c.reward for c in summed.candidates] == [1.0, 2.0, 1.0]


def test_rest_improve_steps_filter_the_same_samples_harder_each_time():
    """ReST's Improve steps: the rest preset's rising thresholds 0.5, 0.7, 0.9 applied to one Grow step's samples
    (rewards by hand) keep 4, 2, then 1 of them, each a subset of the last."""
    config = build_config(RejectionConfig, PRESETS["rest"])
    assert config.improve_thresholds == [0.5, 0.7, 0.9] and config.selection == "threshold" and not config.from_base
    group = PromptCandidates({"prompt": "p"}, [Candidate(f"s{i}", [], r) for i, r in enumerate([0.55, 0.95, 0.2, 0.75, 0.6])])
    kept = [[c.text for _, c in select_best([group], config.selection, threshold=t)] for t in config.improve_thresholds]
    assert kept == [["s1", "s3", "s4", "s0"], ["s1", "s3"], ["s1"]]


@pytest.mark.parametrize("values, message", [
    ({"improve_thresholds": [0.7, 0.5]}, "improve_thresholds must rise"),
    ({"improve_thresholds": [0.5, 0.7], "selection": "best"}, "set selection=threshold"),
])
def test_rest_options_are_checked(values, message):
    with pytest.raises(ConfigError, match=message):
        build_config(RejectionConfig, {"selection": "threshold", **values})
