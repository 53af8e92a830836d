"""RS2 (repeated sampling of random subsets without replacement): the per-epoch subsets themselves."""
import math

import pytest
import torch

from datareduce import RS2Subsets


def test_every_sample_once_before_any_twice():
    rs2 = RS2Subsets(103, 0.3, seed=4)
    assert rs2.per_epoch == math.ceil(0.3 * 103)
    seen = torch.cat([rs2.plan(e) for e in range(10)])  # 10 × 31 = 310 draws: three full passes and a bit
    for k in range(3):
        assert sorted(seen[k * 103:(k + 1) * 103].tolist()) == list(range(103))
    for e in range(10):
        assert len(rs2.plan(e)) == 31 and len(set(rs2.plan(e).tolist())) == 31  # no repeat inside an epoch


def test_subsets_are_fresh_and_reproducible():
    a, b = RS2Subsets(1000, 0.5, seed=0), RS2Subsets(1000, 0.5, seed=0)
    assert torch.equal(a.plan(7), b.plan(7))  # a function of (seed, epoch): a resumed run draws the same
    assert not torch.equal(a.plan(0), a.plan(2))  # a new permutation each pass
    assert set(a.plan(0).tolist()).isdisjoint(a.plan(1).tolist())
    assert not torch.equal(RS2Subsets(1000, 0.5, seed=1).plan(0), a.plan(0))


@pytest.mark.parametrize("fraction", [0, 1.5, -0.1])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="rs2 fraction"):
        RS2Subsets(10, fraction)
