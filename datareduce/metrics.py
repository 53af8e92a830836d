"""The paper's Table A1 columns from per-epoch trajectories of (cumulative wall time, accuracy %)."""
from __future__ import annotations


def _check(trajectory, name):
    points = [(float(t), float(a)) for t, a in trajectory]
    if not points:
        raise ValueError(f"{name} trajectory is empty")
    if any(b[0] < a[0] for a, b in zip(points, points[1:])):
        raise ValueError(f"{name} trajectory times must be cumulative (non-decreasing)")
    return points


def accuracy_drop(baseline, method) -> float:
    """Baseline's final accuracy minus the method's final accuracy, in percentage points."""
    return _check(baseline, "baseline")[-1][1] - _check(method, "method")[-1][1]


def train_boost(baseline, method) -> float:
    """Baseline's total training time over the method's, for the same number of epochs."""
    return _check(baseline, "baseline")[-1][0] / _check(method, "method")[-1][0]


def time_to_reach(trajectory, target: float):
    """Cumulative time of the first epoch whose accuracy is ≥ ``target``; None if never reached."""
    for t, acc in _check(trajectory, "trajectory"):
        if acc >= target:
            return t
    return None


def boost_to_drop(baseline, method, drop_pp: float = 5.0):
    """Time the baseline needs to reach its final accuracy over the time the method needs to reach
    (baseline final − ``drop_pp``). None when the method never gets there."""
    base = _check(baseline, "baseline")
    final = base[-1][1]
    t_method = time_to_reach(method, final - drop_pp)
    return None if t_method is None or t_method == 0 else time_to_reach(base, final) / t_method
