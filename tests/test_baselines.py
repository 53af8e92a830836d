import math

import numpy as np
import pytest
from sklearn.datasets import load_digits

from datareduce import baselines


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data.astype(np.float32), d.target


def test_rpc_keeps_ceil_alpha_per_class(digits):
    _, y = digits
    kept = baselines.random_per_class(y, 0.7, seed=3)
    for c in np.unique(y):
        assert np.isin(kept, np.flatnonzero(y == c)).sum() == math.ceil(0.7 * (y == c).sum())
    assert kept.tobytes() == baselines.random_per_class(y, 0.7, seed=3).tobytes()
    assert kept.tobytes() != baselines.random_per_class(y, 0.7, seed=4).tobytes()


def test_rpd(digits):
    _, y = digits
    kept = baselines.random_per_dataset(len(y), 0.8, seed=0)
    assert len(kept) == math.ceil(0.8 * len(y)) and len(np.unique(kept)) == len(kept)
    assert np.all(np.diff(kept) > 0)


def test_ssp_keeps_the_most_remote_by_cosine(digits):
    from sklearn.cluster import KMeans
    x, y = digits
    kept = baselines.ssp(x, y, alpha=0.6, seed=0)
    assert len(kept) == math.ceil(0.6 * len(x))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    km = KMeans(n_clusters=10, n_init=1, random_state=0).fit(unit)
    c = km.cluster_centers_ / np.linalg.norm(km.cluster_centers_, axis=1, keepdims=True)
    d = 1 - (unit * c[km.labels_]).sum(1)
    dropped = np.setdiff1d(np.arange(len(x)), kept)
    assert d[kept].min() >= d[dropped].max() - 1e-9


def test_bad_alpha():
    with pytest.raises(ValueError, match="alpha=2"):
        baselines.random_per_dataset(10, 2)
    with pytest.raises(ValueError, match="empty"):
        baselines.random_per_class([], 0.5)
