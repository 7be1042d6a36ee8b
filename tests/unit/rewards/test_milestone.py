"""Milestone rewards (seed 003, S3 L3093-3123): hand-computed sums for the seed's example weights,
partial episodes, per-step increments, weight validation, and the registry factory."""

from __future__ import annotations

import json

import pytest

from posttrain.errors import ConfigError, UserError
from posttrain.rewards import registry
from posttrain.rewards.milestone import SEED_WEIGHTS, Milestone, MilestoneReward, milestone_reward

EXPECTED = {"start_url": "https://app/home", "click": {"role": "button", "name": "Export"}, "fields": ["from", "to"],
            "file_extension": ".csv"}

FULL_EPISODE = [
    {"type": "navigation", "url": "https://app/home"},       # same page: not a navigation
    {"type": "navigation", "url": "https://app/reports"},    # navigation 0.1
    {"type": "fill", "field": "from", "value": "2024-01-01"},  # form 1/2 -> 0.1
    {"type": "fill", "field": "to", "value": "2024-12-31"},    # form 2/2 -> 0.2
    {"type": "click", "role": "button", "name": "Export"},    # ui 0.2
    {"type": "file", "event": "created", "path": "/Downloads/report.csv"},  # file 0.3
    {"type": "goal", "verified": True},                      # goal 0.2
]


def test_seed_weights_are_the_seeds_table():
    assert SEED_WEIGHTS == {"navigation": 0.1, "ui": 0.2, "form": 0.2, "file": 0.3, "goal": 0.2}
    assert sum(SEED_WEIGHTS.values()) == pytest.approx(1.0)


def test_full_episode_scores_one_and_breaks_down_by_weight():
    reward = MilestoneReward.seed_example()
    assert reward.achievements(FULL_EPISODE, EXPECTED) == {"navigation": 1.0, "ui": 1.0, "form": 1.0, "file": 1.0, "goal": 1.0}
    assert reward.breakdown(FULL_EPISODE, EXPECTED) == pytest.approx(SEED_WEIGHTS)
    assert reward.score(FULL_EPISODE, EXPECTED) == pytest.approx(1.0)


@pytest.mark.parametrize("events, want", [
    ([], 0.0),
    (FULL_EPISODE[:2], 0.1),                                   # navigated only
    (FULL_EPISODE[:3], 0.1 + 0.2 * 0.5),                       # + one of two fields
    (FULL_EPISODE[:5], 0.1 + 0.2 + 0.2),                       # + both fields + the right click
    ([{"type": "click", "role": "button", "name": "Cancel"}], 0.0),           # wrong element
    ([{"type": "file", "event": "created", "path": "/Downloads/r.pdf"}], 0.0),  # wrong extension
    ([{"type": "file", "event": "deleted", "path": "/Downloads/r.csv"}], 0.0),
    ([{"type": "fill", "field": "from", "value": ""}, {"type": "fill", "field": "other", "value": "x"}], 0.0),
    ([{"type": "goal", "verified": True}, {"type": "file", "event": "created", "path": "a.csv"}], 0.2 + 0.3),
])
def test_partial_episodes(events, want):
    assert MilestoneReward.seed_example().score(events, EXPECTED) == pytest.approx(want)


def test_each_milestone_counts_once_and_step_rewards_sum_to_the_score():
    reward = MilestoneReward.seed_example()
    repeated = FULL_EPISODE + FULL_EPISODE[1:]  # every milestone reached again
    assert reward.score(repeated, EXPECTED) == pytest.approx(1.0)
    steps = reward.step_rewards(FULL_EPISODE, EXPECTED)
    assert steps == pytest.approx([0.0, 0.1, 0.1, 0.1, 0.2, 0.3, 0.2])
    assert reward.step_rewards(repeated, EXPECTED)[len(FULL_EPISODE):] == pytest.approx([0.0] * 6)


def test_navigation_without_start_url_and_to_a_target_url():
    reward = MilestoneReward([Milestone("navigation", 1.0, MilestoneReward.seed_example().milestones[0].predicate)])
    assert reward.score([{"type": "navigation", "url": "https://a"}]) == 1.0  # url_{-1} is none
    assert reward.score([{"type": "navigation", "url": "https://a"}], {"url": "https://b"}) == 0.0
    assert reward.score([{"type": "navigation", "url": "https://b"}], {"url": "https://b"}) == 1.0


def test_form_with_a_field_count():
    events = [{"type": "fill", "field": "a", "value": "x"}, {"type": "fill", "field": "a", "value": "y"},
              {"type": "fill", "field": "b", "value": "z"}]
    weights = {"navigation": 0.0, "ui": 0.0, "form": 1.0, "file": 0.0, "goal": 0.0}
    assert MilestoneReward.seed_example(**weights).score(events, {"fields": 4}) == pytest.approx(0.5)


def test_weights_overrides_and_validation():
    reward = MilestoneReward.seed_example(navigation=0.0, goal=0.3)
    assert reward.score(FULL_EPISODE, EXPECTED) == pytest.approx(1.0)
    assert reward.score(FULL_EPISODE[:2], EXPECTED) == 0.0
    with pytest.raises(ConfigError, match=r"milestone weights sum to 1.1 .*sum to 1 or set weights_sum_to_one=false"):
        MilestoneReward.seed_example(goal=0.3)
    assert MilestoneReward.seed_example(weights_sum_to_one=False, goal=0.3).score(FULL_EPISODE, EXPECTED) == pytest.approx(1.1)
    with pytest.raises(ConfigError, match="milestone 'ui' has weight -0.2; weights must be finite numbers >= 0"):
        MilestoneReward.seed_example(ui=-0.2, goal=0.6)
    with pytest.raises(ConfigError, match=r"unknown milestone\(s\) login; milestones are: navigation, ui, form, file, goal"):
        MilestoneReward.seed_example(login=0.1)
    with pytest.raises(ConfigError, match="distinct names"):
        MilestoneReward([Milestone("a", 0.5, lambda e, x: 1), Milestone("a", 0.5, lambda e, x: 1)])


def test_custom_milestones_and_bad_predicates():
    reward = MilestoneReward([Milestone("opened", 0.25, lambda ev, ex: any(e["type"] == "open" for e in ev)),
                              Milestone("saved", 0.75, lambda ev, ex: sum(e["type"] == "save" for e in ev) / 2)])
    assert reward.score([{"type": "open"}, {"type": "save"}]) == pytest.approx(0.25 + 0.75 * 0.5)
    with pytest.raises(UserError, match="milestone 'saved' returned 1.5"):
        reward.score([{"type": "save"}] * 3)
    with pytest.raises(UserError, match="the 'ui' milestone needs the expected element"):
        MilestoneReward.seed_example().score(FULL_EPISODE, {"fields": 2})


def test_registry_builds_the_reward_with_weight_options():
    name, fn = registry.build("milestone:navigation=0:goal=0.3")
    assert name == "milestone"
    rows = [FULL_EPISODE, FULL_EPISODE[:2], json.dumps(FULL_EPISODE[:5]), None]
    got = fn(["p"] * 4, ["c"] * 4, events=rows, expected=[EXPECTED] * 4, answer=["x"] * 4)
    assert got[:3] == pytest.approx([1.0, 0.0, 0.2 + 0.2]) and got[3] is None
    _, custom = registry.build("milestone:events_column=trace:expected_column=task:ui=0:form=0:navigation=0.5")
    assert custom(["p"], ["c"], trace=[[{"type": "goal", "verified": True}]], task=[None]) == pytest.approx([0.2])


def test_registry_errors_are_config_errors():
    with pytest.raises(ConfigError, match=r"reward 'milestone': unknown option\(s\) login; its options are: events_column="):
        registry.build("milestone:login=0.1")
    with pytest.raises(ConfigError, match="milestone 'file' has weight -0.3"):
        registry.build("milestone:file=-0.3:goal=0.8")
    with pytest.raises(ConfigError, match="sum to 1.5"):
        registry.build("milestone:goal=0.7")
    fn = milestone_reward()
    with pytest.raises(UserError, match="reads each episode's events from column 'events', which the data does not have"):
        fn(["p"], ["c"], answer=["1"])
    with pytest.raises(UserError, match="completion 0: column 'events' must be a list of event objects"):
        fn(["p"], ["c"], events=[{"type": "goal"}])


def test_each_milestone_share_of_episodes_is_logged_through_trls_log_metric():
    logged = {}
    reward = milestone_reward()
    events = [[{"type": "navigation", "url": "a"}, {"type": "goal", "verified": True}],
              [{"type": "file", "event": "created", "path": "x.txt"}], None]
    expected = [{"click": {"name": "Go"}, "fields": 1}] * 3
    values = reward(["p"] * 3, ["c"] * 3, log_metric=lambda name, value: logged.__setitem__(name, value),
                    events=events, expected=expected)
    assert values == [0.1 + 0.2, 0.3, None]
    # over the two scored episodes: navigation 1/2, goal 1/2, file 1/2, ui and form 0
    assert logged == {"milestone/navigation": 0.5, "milestone/ui": 0.0, "milestone/form": 0.0, "milestone/file": 0.5,
                      "milestone/goal": 0.5}
