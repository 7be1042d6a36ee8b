"""The confidence cascade (rewards/cascade.py): routing by each tier's confidence and the α/β/γ blend,
against values worked out from the real tier functions called on their own (the milestone reward, a
tiny random reward model, the embedded LLM judge), and the tier logged per sample."""

from __future__ import annotations

import math

import pytest

from reward_model_dirs import make_reward_model_dir
from posttrain.errors import ConfigError
from posttrain.rewards import registry
from posttrain.rewards.functions import RewardFunctions
from posttrain.rewards.judge import pointwise_judge
from posttrain.rewards.learned import reward_model
from posttrain.rewards.milestone import milestone_reward

JUDGE = "(judge:method=logprob:min_score=0:max_score=9)"  # the embedded model, one forward per sample
EXPECTED = {"click": {"role": "button", "name": "Submit"}, "fields": ["name"]}
EPISODES = [  # rows 0-2 carry events (the rule detectors apply), rows 3-7 none (they defer)
    [{"type": "navigation", "url": "/form"}, {"type": "fill", "field": "name", "value": "Ada"}],
    [{"type": "click", "role": "button", "name": "Submit"}, {"type": "goal", "verified": True}],
    [],
    None, None, None, None, None,
]


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory) -> str:
    """A tiny random reward model (Llama, one output) with a large head, so its confidences spread out."""
    return make_reward_model_dir(tmp_path_factory.mktemp("cascade-rm"), "llama", seed=0, head_std=3.0)


@pytest.fixture(scope="module")
def batch():
    prompts = [[{"role": "user", "content": f"Fill in the form for user {i}."}] for i in range(len(EPISODES))]
    completions = [[{"role": "assistant", "content": f"I typed name {i * 7} and pressed submit."}] for i in range(len(EPISODES))]
    return prompts, completions, {"events": EPISODES, "expected": [EXPECTED] * len(EPISODES)}


@pytest.fixture(scope="module")
def tiers(rm_dir, batch):
    """Each tier's values on the whole batch, computed by its own function."""
    prompts, completions, columns = batch
    rule = milestone_reward()(prompts, completions, **columns)
    r = reward_model(path=rm_dir)(prompts, completions)
    judge = pointwise_judge(method="logprob", min_score=0, max_score=9)(prompts, completions)
    return rule, r, judge


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_rules_take_precedence_then_the_model_then_the_judge(rm_dir, batch, tiers):
    prompts, completions, columns = batch
    rule, r, judge = tiers
    confidence = [abs(2 * sigmoid(x) - 1) for x in r]
    threshold = sorted(confidence[3:])[2]  # rows 3-7: two below the model's threshold, three at or above
    spec = f"cascade:rule=milestone:model={rm_dir}:judge={JUDGE}:alpha=0.5:beta=0.3:gamma=0.2:model_threshold={threshold}"
    functions = RewardFunctions.resolve([spec], "prompts.jsonl")
    got = functions(prompts, completions, columns).total
    want, tiers_want = [], []
    for i in range(len(EPISODES)):
        if rule[i] is not None:  # a detector emitted a score: it decides alone
            want.append(rule[i]), tiers_want.append("rule")
        elif confidence[i] >= threshold:  # no rule: R_φ as σ(r), β/β
            want.append(sigmoid(r[i])), tiers_want.append("model")
        else:  # both unsure: the judge, blended with R_φ (no rule value): (β σ(r) + γ J) / (β + γ)
            want.append((0.3 * sigmoid(r[i]) + 0.2 * judge[i]) / 0.5), tiers_want.append("judge")
    assert got == pytest.approx(want, abs=1e-5)
    assert rule[:3] == pytest.approx([0.1 + 0.2, 0.2 + 0.2, 0.0])  # hand: navigation + form; ui + goal; nothing
    metrics, extra = functions.pop_logged()
    assert extra["cascade_tier"] == tiers_want and tiers_want.count("judge") == 2 and tiers_want.count("model") == 3
    assert metrics["cascade/rule"] == [3 / 8] and metrics["cascade/model"] == [3 / 8] and metrics["cascade/judge"] == [2 / 8]
    assert metrics["cascade/none"] == [0.0]


def test_all_three_tiers_unsure_gives_the_seed_blend(rm_dir, batch, tiers):
    """Rule confidence 0.3 < threshold 0.5 and a model threshold of 1: every sample escalates to the judge,
    and r = α r_rule + β σ(R_φ) + γ r_judge where a detector applies (rows 0-2), the renormalized rest elsewhere."""
    prompts, completions, columns = batch
    rule, r, judge = tiers
    _, fn = registry.build(f"cascade:rule=milestone:rule_confidence=0.3:model={rm_dir}:model_threshold=1:"
                           f"judge={JUDGE}:alpha=0.5:beta=0.3:gamma=0.2")
    logged = {}
    got = fn(prompts, completions, log_extra=lambda c, v: logged.setdefault(c, v), **columns)
    for i in range(len(EPISODES)):
        if rule[i] is not None:
            assert got[i] == pytest.approx(0.5 * rule[i] + 0.3 * sigmoid(r[i]) + 0.2 * judge[i], abs=1e-5)
        else:
            assert got[i] == pytest.approx((0.3 * sigmoid(r[i]) + 0.2 * judge[i]) / 0.5, abs=1e-5)
    assert logged["cascade_tier"] == ["judge"] * len(EPISODES)
    assert fn.reward_range == (0.0, 1.0)  # milestone [0, 1], σ(r), judge [0, 1]


def test_rule_specs_blend_by_their_confidence(batch):
    """Two detectors: value = (1·m_seed + 0.5·m_goal) / 1.5 where both apply; equal weights by default."""
    prompts, completions, columns = batch
    goal_only = "(milestone:goal=1:navigation=0:ui=0:form=0:file=0)"
    _, fn = registry.build(f"cascade:rule=[milestone, {goal_only}]:rule_confidence=[1.0, 0.5]")
    seed = milestone_reward()(prompts, completions, **columns)
    goal = milestone_reward(goal=1, navigation=0, ui=0, form=0, file=0)(prompts, completions, **columns)
    got = fn(prompts, completions, **columns)
    for i in range(len(EPISODES)):
        assert got[i] == (None if seed[i] is None else pytest.approx((seed[i] + 0.5 * goal[i]) / 1.5))
    assert goal[1] == 1.0 and seed[1] == pytest.approx(0.4)


@pytest.mark.parametrize("options,message", [
    ("rule=milestone:judge=judge:alpha=0.5:gamma=0.4", "alpha + beta + gamma must be 1"),
    ("rule=milestone:alpha=0.5:beta=0.5", "beta=0.5 weighs the model tier, which is not configured"),
    ("rule=milestone:judge=judge:alpha=1:gamma=0", "gamma=0 but the judge tier is configured"),
    ("alpha=1", "cascade needs at least one tier"),
    ("rule=milestone:rule_threshold=2", "rule_threshold must be a confidence in [0, 1]"),
    ("rule=[milestone, format]:rule_confidence=[1.0]", "rule_confidence must be a number in [0, 1] or a list of 2"),
    ("rule=milestone:model_output=logit", "model_output must be one of sigmoid, raw"),
    ("rule=milestone:thresh=1", "unknown option(s) thresh"),
])
def test_bad_options_name_the_fix(options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("+", r"\+")):
        registry.build(f"cascade:{options}")
