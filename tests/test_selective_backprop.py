import pytest
import torch

from datareduce import ComposerSBSelector, SelectiveBackpropSelector


def test_keep_rate_matches_cdf_power_beta():
    """With a history of uniform(0,1) losses, a loss x has CDF≈x, so it is kept with probability ≈ x^β."""
    beta = 2.0
    sel = SelectiveBackpropSelector(beta=beta, history=1024, seed=0)
    gen = torch.Generator().manual_seed(0)
    sel.history.push(torch.rand(1024, generator=gen))
    before = sel.history.view().clone()
    for x in (0.3, 0.6, 0.9):
        n, kept = 20000, 0
        for _ in range(n // 100):
            sel.history.load_state_dict({"values": before.clone(), "count": 1024, "pos": 0})
            kept += int(sel.select(torch.full((100,), x)).sum())
        # the batch enters the history before its CDF is read, and only strictly lower losses count (as in
        # SB's percentile_of_score): the 100 tied copies of x in the history do not count
        cdf = float((sel.history.view() < x).float().mean())
        p = cdf ** beta
        se = (p * (1 - p) / n) ** 0.5
        assert abs(kept / n - p) < 5 * se, (x, kept / n, p)


def test_nonfinite_never_kept_and_eta():
    sel = SelectiveBackpropSelector(eta=2, omega=-1)
    idx = torch.arange(4)
    keep = sel.select(torch.tensor([float("nan"), 5.0, float("inf"), 5.0]), idx, epoch=0)
    assert not keep[0] and not keep[2]
    assert not sel.needs_scoring(idx, 1).any() and sel.needs_scoring(idx, 2).all()


def test_state_round_trip():
    a = SelectiveBackpropSelector(seed=1)
    for _ in range(3):
        a.select(torch.rand(50))
    b = SelectiveBackpropSelector(seed=2)
    b.load_state_dict(a.state_dict())
    x = torch.rand(50)
    assert torch.equal(a.select(x), b.select(x))


@pytest.mark.parametrize("kw", [dict(beta=0), dict(history=1), dict(eta=0)])
def test_bad_parameters(kw):
    with pytest.raises(ValueError, match=list(kw)[0]):
        SelectiveBackpropSelector(**kw)


def test_composer_keeps_fixed_fraction_favouring_high_losses():
    sel = ComposerSBSelector(keep=0.25, seed=0)
    losses = torch.arange(64, dtype=torch.float)
    picks = torch.zeros(64)
    for _ in range(300):
        m = sel.select(losses)
        assert int(m.sum()) == 16
        picks += m
    assert picks[48:].sum() > 3 * picks[:16].sum()


def test_composer_schedule_and_nonfinite():
    sel = ComposerSBSelector(keep=0.5, start=0.5, end=0.9, interrupt=2)
    assert not sel.is_active(0.2, 0) and not sel.is_active(0.95, 0)
    assert sel.is_active(0.6, 0) and not sel.is_active(0.6, 1)  # every 2nd batch (1-based) trains in full
    m = sel.select(torch.tensor([float("nan"), 1.0, 2.0, 3.0]))
    assert not m[0] and int(m.sum()) == 2
