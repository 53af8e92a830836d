import pytest

from datareduce import metrics

BASE = [(10, 50.0), (20, 70.0), (30, 78.0), (40, 80.0)]
FAST = [(5, 45.0), (10, 66.0), (15, 75.0), (20, 79.0)]


def test_by_hand():
    assert metrics.accuracy_drop(BASE, FAST) == pytest.approx(1.0)
    assert metrics.train_boost(BASE, FAST) == pytest.approx(2.0)
    # baseline reaches its final 80 at t=40; method reaches 80-5=75 at t=15
    assert metrics.boost_to_drop(BASE, FAST, 5.0) == pytest.approx(40 / 15)
    assert metrics.time_to_reach(FAST, 79.5) is None
    assert metrics.boost_to_drop(BASE, [(5, 10.0), (10, 20.0)], 5.0) is None


def test_bad_trajectories():
    with pytest.raises(ValueError, match="empty"):
        metrics.accuracy_drop([], FAST)
    with pytest.raises(ValueError, match="cumulative"):
        metrics.train_boost([(10, 1), (5, 2)], FAST)
