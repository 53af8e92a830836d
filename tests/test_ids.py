import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.datasets import load_digits

from datareduce import ids


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data.astype(np.float64), d.target


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("mode", ["easy", "hard"])
def test_keeps_ceil_alpha_per_class_plus_prototype(digits, alpha, mode):
    x, y = digits
    kept = ids.select(x, y, alpha=alpha, mode=mode)
    assert np.all(np.diff(kept) > 0)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        k = np.intersect1d(kept, members)
        dist = np.linalg.norm(x[members] - x[members].mean(0), axis=1)
        proto = members[np.argmin(dist)]
        assert proto in k
        n = math.ceil(alpha * len(members))
        assert len(k) in (n, n + 1)
        far_first = members[np.argsort(-dist, kind="stable")[:n]]
        near_first = members[np.argsort(dist, kind="stable")[:n]]
        assert set(far_first if mode == "hard" else near_first) <= set(k)


def test_easy_and_hard_orders_are_reversed_distances(digits):
    x, _ = digits
    dist, _ = ids.centroid_distances(x.astype(np.float64))
    easy, hard = ids.ranked(dist, "easy"), ids.ranked(dist, "hard")
    assert np.all(np.diff(dist[easy]) >= 0) and np.all(np.diff(dist[hard]) <= 0)
    assert np.allclose(dist[easy], dist[hard][::-1])


def test_dataset_wide_mode(digits):
    x, y = digits
    kept = ids.select(x, None, alpha=0.5)
    assert len(kept) in (math.ceil(0.5 * len(x)), math.ceil(0.5 * len(x)) + 1)
    dist = np.linalg.norm(x - x.mean(0), axis=1)
    assert np.argmin(dist) in kept
    assert np.all(dist[kept].max() <= np.sort(dist)[math.ceil(0.5 * len(x))] + 1e-9)


def test_several_prototypes_deterministic(digits):
    x, y = digits
    a = ids.select(x, y, alpha=0.3, prototypes=3, seed=1)
    b = ids.select(x, y, alpha=0.3, prototypes=3, seed=1)
    assert a.tobytes() == b.tobytes()
    # with 3 centroids per class up to 3 prototypes join the ⌈α·L⌉
    for c in np.unique(y):
        n = math.ceil(0.3 * (y == c).sum())
        assert n <= np.isin(a, np.flatnonzero(y == c)).sum() <= n + 3


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 60), d=st.integers(1, 5), alpha=st.floats(0.01, 1.0), seed=st.integers(0, 10))
def test_property_count_and_prototype(n, d, alpha, seed):
    x = np.random.default_rng(seed).normal(size=(n, d))
    kept = ids.select(x, alpha=alpha, mode="hard")
    assert math.ceil(alpha * n) <= len(kept) <= math.ceil(alpha * n) + 1
    assert np.argmin(np.linalg.norm(x - x.mean(0), axis=1)) in kept


@pytest.mark.parametrize("kw,needle", [
    (dict(alpha=0), "alpha=0"), (dict(alpha=1.01), "alpha=1.01"), (dict(mode="medium"), "mode='medium'"),
    (dict(prototypes=0), "prototypes=0"),
])
def test_bad_parameters(digits, kw, needle):
    x, y = digits
    with pytest.raises(ValueError, match=needle):
        ids.select(x, y, **kw)


def test_bad_inputs():
    with pytest.raises(ValueError, match="non-empty"):
        ids.select(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="differ in length: 3 embeddings, 2 labels"):
        ids.select(np.zeros((3, 4)), [0, 1])
    with pytest.raises(ValueError, match="class 1 has 1 sample"):
        ids.select(np.random.rand(5, 2), [0, 0, 0, 0, 1], prototypes=2)


def test_gamma_schedule():
    assert [ids.mode_for_epoch(e, 2) for e in range(4)] == ["easy", "easy", "hard", "hard"]
    assert ids.mode_for_epoch(99) == "easy"
