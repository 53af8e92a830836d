import pytest
import torch
from hypothesis import given, settings, strategies as st

from datareduce import BatchAccumulator


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=20), rho=st.integers(1, 32))
def test_exact_batches_in_order_with_remainder(sizes, rho):
    acc = BatchAccumulator(rho)
    start, out = 0, []
    for n in sizes:
        ids = torch.arange(start, start + n)
        start += n
        acc.add((ids.float(), ids))
        while acc.ready():
            b = acc.pop()
            assert len(b[1]) == rho
            out.append(b[1])
    rest = acc.flush()
    if rest is not None:
        assert 0 < len(rest[1]) < rho
        out.append(rest[1])
    got = torch.cat(out) if out else torch.zeros(0, dtype=torch.long)
    assert torch.equal(got, torch.arange(start))
    assert len(acc) == 0


def test_state_round_trip_keeps_partial_buffer():
    acc = BatchAccumulator(4)
    acc.add((torch.arange(3),))
    other = BatchAccumulator(4)
    other.load_state_dict(acc.state_dict())
    other.add((torch.arange(3, 6),))
    assert other.pop()[0].tolist() == [0, 1, 2, 3]
    with pytest.raises(RuntimeError, match="rho=4"):
        other.pop()


def test_bad_rho():
    with pytest.raises(ValueError, match="rho=0"):
        BatchAccumulator(0)
