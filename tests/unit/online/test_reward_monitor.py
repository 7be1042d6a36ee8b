"""online.reward_monitor: share at the maximum, robust jumps, proxy-vs-gold gap; values worked out by hand."""

import pytest

from posttrain.online.reward_monitor import RewardMonitor, pearson, robust_z, scaled, share_at_max, standard_error


def test_share_at_max_leaves_out_none_and_counts_values_within_tolerance():
    # present: 1, 0.5, 1, 1 - 1e-7 (within 1e-6 of 1), 1.5 (above: a function past its declared max) -> 4 of 5
    assert share_at_max([1.0, 0.5, 1.0, None, 1.0 - 1e-7, 1.5], 1.0) == pytest.approx(4 / 5)
    assert share_at_max([0.0, 0.999], 1.0) == 0.0
    # the tolerance is relative above |max| = 1: 1000 - 5e-4 is within 1e-6 x 1000 = 1e-3 of 1000
    assert share_at_max([1000.0 - 5e-4, 998.0], 1000.0) == 0.5
    assert share_at_max([None, None], 1.0) is None


def test_robust_z_against_median_and_mad_with_a_floor():
    """history .1 .2 .3 .4 .5 (any order): median .3; |deviations| 0 .1 .1 .2 .2, median .1; 1.4826 x .1 =
    .14826 > floor .05 x span 1; a mean of .9 is (.9 - .3) / .14826 = 4.0469 robust std away."""
    assert robust_z(0.9, [0.1, 0.3, 0.2, 0.5, 0.4], span=1.0) == pytest.approx(0.6 / 0.14826, rel=1e-6)
    # a flat history has MAD 0: the floor .05 x span 1 = .05 scales it, (.5 - .1) / .05 = 8
    assert robust_z(0.5, [0.1, 0.1, 0.2, 0.1, 0.3], span=1.0) == pytest.approx(8.0)
    # with span 10 the floor is .5: (.5 - .1) / .5 = .8
    assert robust_z(0.5, [0.1] * 5, span=10.0) == pytest.approx(0.8)
    # the round's own standard error, when larger, scales it: (.5 - .1) / .2 = 2
    assert robust_z(0.5, [0.1] * 5, span=1.0, standard_error=0.2) == pytest.approx(2.0)
    assert robust_z(0.9, [0.1] * 4, span=1.0) == 0.0  # fewer than 5 rounds of history
    assert robust_z(0.9, [0.1] * 5, span=0.0) == 0.0  # nothing ever varied: nothing to scale by


def test_pearson_and_scaling():
    """x = 1, 2, 3; y = 2, 4, 7: deviations -1 0 1 and -7/3 -1/3 8/3; sxy = 7/3 + 8/3 = 5, sxx = 2,
    syy = (49 + 1 + 64) / 9 = 114/9; r = 5 / sqrt(2 x 114/9) = 0.99340."""
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / (2 * 114 / 9) ** 0.5)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 2], [5, 5]) is None and pearson([1], [1]) is None
    assert pearson([1, 2, 3], [0.975, 0.975 + 1e-16, 0.975]) is None  # float noise is no variation
    assert scaled(0.0, (-1.0, 1.0)) == 0.5 and scaled(3.0, None) == 3.0
    # 0, 1, 0, 1: mean .5, sample variance 4 x .25 / 3 = 1/3; over n = 4: 1/12; SE = sqrt(1/12)
    assert standard_error([0, 1, 0, 1]) == pytest.approx((1 / 12) ** 0.5) and standard_error([3]) == 0.0


def test_share_at_max_uses_the_declared_max_else_the_largest_value_so_far():
    monitor = RewardMonitor({"acc": (0.0, 1.0), "length": None}, {}, None)
    metrics, _ = monitor.update(1, {"acc": [0.5, 0.5, None], "length": [3, 5, 5]}, {}, [1.0, 1.0, 1.0])
    assert metrics["reward/acc/at_max"] == 0.0  # none reached the declared 1, however high they are this round
    assert metrics["reward/length/at_max"] == pytest.approx(2 / 3)  # the max seen so far: 5
    metrics, _ = monitor.update(2, {"acc": [1.0, 0.0], "length": [4, 6]}, {}, [1.0, 1.0])
    assert metrics["reward/acc/at_max"] == 0.5 and metrics["reward/length/at_max"] == 0.5  # max seen now 6
    metrics, _ = monitor.update(3, {"acc": [None], "length": [5]}, {}, [1.0])
    assert "reward/acc/at_max" not in metrics  # no value this round: nothing logged
    assert metrics["reward/length/at_max"] == 0.0  # 5 < the 6 seen at round 2


def test_a_jump_is_flagged_once_at_its_onset_and_the_state_round_trips():
    """Five rounds at mean .1 (flat: MAD 0, floor .05 x span 1; every sample equal: SE 0), then .9:
    z = .8 / .05 = 16, a jump. The next round at .9 is still 16 from the median (.1 of .1 x 5, .9), but
    the same shift: not flagged again."""
    monitor = RewardMonitor({"acc": (0.0, 1.0)}, {}, None)
    for step in range(1, 6):
        metrics, jumps = monitor.update(step, {"acc": [0.1, 0.1]}, {}, [0.1, 0.1])
        assert metrics["reward/acc/jump"] == 0.0 and metrics["reward/acc/jump_z"] == 0.0 and not jumps
    twin = RewardMonitor({"acc": (0.0, 1.0)}, {}, None)
    twin.load_state_dict(monitor.state_dict())
    metrics, jumps = monitor.update(6, {"acc": [0.9, 0.9]}, {}, [0.9, 0.9])
    assert metrics["reward/acc/jump_z"] == pytest.approx(16.0) and metrics["reward/acc/jump"] == 1.0
    assert [(j.prefix, j.step, j.mean, j.center) for j in jumps] == [("reward/acc", 6, pytest.approx(0.9), pytest.approx(0.1))]
    assert "reward 'acc' jumped up at step 6" in jumps[0].line()
    assert twin.update(6, {"acc": [0.9, 0.9]}, {}, [0.9, 0.9])[0] == metrics  # a resumed run continues identically
    metrics, jumps = monitor.update(7, {"acc": [0.9, 0.9]}, {}, [0.9, 0.9])
    assert metrics["reward/acc/jump_z"] == pytest.approx(16.0) and metrics["reward/acc/jump"] == 0.0 and not jumps
    # a fall back is a new event, downwards: history .1 x 5, .9, .9 -> median .1, MAD 0 -> z = (0 - .1) / .05 = -2:
    # under the threshold, so no event; the window does not forget the old level for 10 rounds
    metrics, jumps = monitor.update(8, {"acc": [0.0, 0.0]}, {}, [0.0, 0.0])
    assert metrics["reward/acc/jump_z"] == pytest.approx(-2.0) and not jumps


def test_a_noisy_small_round_is_not_a_jump():
    """History .1 x 5; a round of 16 samples of a 0/1 reward, 5 of them 1: mean .3125, sample std
    sqrt(5 x 11 / 16 / 15) = .4787, SE .4787 / 4 = .1197 > the floor .05, so z = .2125 / .1197 = 1.78."""
    monitor = RewardMonitor({"acc": (0.0, 1.0)}, {}, None)
    for step in range(1, 6):
        monitor.update(step, {"acc": [0.1]}, {}, [0.1])
    metrics, jumps = monitor.update(6, {"acc": [1.0] * 5 + [0.0] * 11}, {}, [0.0] * 16)
    assert metrics["reward/acc/jump_z"] == pytest.approx(0.2125 / ((5 * 11 / 16 / 15) ** 0.5 / 4)) and not jumps


def test_a_round_that_is_all_zero_by_chance_is_judged_by_the_windows_noise():
    """Five rounds of 0/1 rewards, 2 of 4 at 1 (mean .5, SE sqrt(4 x .25 / 3 / 4) = .2887), then a round
    all 0: its own SE is 0, but the window's median SE .2887 scales it: z = -.5 / .2887 = -1.73, no jump."""
    monitor = RewardMonitor({"acc": (0.0, 1.0)}, {}, None)
    for step in range(1, 6):
        monitor.update(step, {"acc": [1.0, 0.0, 1.0, 0.0]}, {}, [0.0] * 4)
    metrics, jumps = monitor.update(6, {"acc": [0.0] * 4}, {}, [0.0] * 4)
    assert metrics["reward/acc/jump_z"] == pytest.approx(-0.5 / (1 / 12) ** 0.5) and not jumps


def test_monitors_get_the_same_statistics_and_a_gap_to_the_trained_reward():
    """Trained reward range 0..2 (e.g. two 0..1 rewards), gold 0..1. Pairs where both have a value:
    sample 0 (2.0 -> 1.0, gold .5) and sample 1 (0 -> 0, gold 0); sample 2 has no gold, sample 3 no reward.
    proxy = (1 + 0) / 2 = .5, gold = (.5 + 0) / 2 = .25, gap = .25; two distinct points: correlation 1."""
    monitor = RewardMonitor({"acc": (0.0, 1.0)}, {"gold": (0.0, 1.0)}, (0.0, 2.0))
    metrics, _ = monitor.update(1, {"acc": [1.0, 0.0, 1.0, None]}, {"gold": [0.5, 0.0, None, 1.0]}, [2.0, 0.0, 1.5, None])
    assert metrics["monitor/gold/at_max"] == pytest.approx(1 / 3)  # .5, 0, 1
    assert metrics["monitor/gold/proxy"] == pytest.approx(0.5)
    assert metrics["monitor/gold/gold"] == pytest.approx(0.25)
    assert metrics["monitor/gold/gap"] == pytest.approx(0.25)
    assert metrics["monitor/gold/correlation"] == pytest.approx(1.0)
    assert "monitor/gold/jump" in metrics and "reward/acc/jump" in metrics
    # without declared ranges both stay in their own units; a constant gold has no correlation
    raw = RewardMonitor({"r": None}, {"g": None}, None)
    metrics, _ = raw.update(1, {"r": [3.0, 5.0]}, {"g": [1.0, 1.0]}, [3.0, 5.0])
    assert metrics["monitor/g/gap"] == pytest.approx(4.0 - 1.0) and "monitor/g/correlation" not in metrics
