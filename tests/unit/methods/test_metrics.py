"""pass@k and avg@k against hand-computed values."""

import pytest

from posttrain.methods.metrics import ks_to_report, pass_at_k, summarize_scores


def test_pass_at_k_hand_values():
    # n=4 samples, c=1 correct: pass@1 = 1/4, pass@2 = 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(4, 0, 4) == 0.0
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)  # C(3,3)/C(5,3)


def test_summarize_scores():
    report = summarize_scores([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], threshold=0.5)
    assert report["avg@4"] == pytest.approx(5 / 12)
    assert report["pass@1"] == pytest.approx((0.25 + 0 + 1) / 3)
    assert report["pass@4"] == pytest.approx(2 / 3)
    assert ks_to_report(4) == [1, 2, 4] and ks_to_report(6) == [1, 2, 4, 6] and ks_to_report(1) == [1]
