import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from datareduce import AdonisSelector
from datareduce.adonis import bin_count, candidate_mask

losses_st = st.lists(st.floats(0, 20, allow_nan=False, width=32), min_size=1, max_size=300)


def clipped_range(history, sigma):
    h = torch.tensor(history)
    keep = h[(h - h.mean()).abs() <= sigma * h.std(unbiased=False)]
    if keep.numel() == 0:
        return float("inf"), -float("inf")  # everything clipped: nothing may be kept
    return float(keep.min()), float(keep.max())


@settings(max_examples=60, deadline=None)
@given(losses=losses_st, sigma=st.floats(0.2, 3), theta=st.floats(0, 0.9), alpha=st.floats(0.01, 1))
def test_never_selects_outliers_and_respects_alpha(losses, sigma, theta, alpha):
    sel = AdonisSelector(history=4096, sigma=sigma, theta=theta, alpha=alpha)
    x = torch.tensor(losses)
    keep = sel.select(x)
    assert keep.dtype == torch.bool and keep.shape == x.shape
    assert int(keep.sum()) <= math.ceil(alpha * len(losses))
    lo, hi = clipped_range(losses, sigma)  # the history is exactly this batch
    kept = x[keep]
    assert ((kept >= lo) & (kept <= hi)).all()


@settings(max_examples=60, deadline=None)
@given(losses=losses_st, t1=st.floats(0, 0.95), t2=st.floats(0, 0.95))
def test_raising_theta_never_selects_more(losses, t1, t2):
    lo_t, hi_t = sorted((t1, t2))
    x = torch.tensor(losses)
    n_lo = AdonisSelector(theta=lo_t, alpha=1.0).select(x).sum()
    n_hi = AdonisSelector(theta=hi_t, alpha=1.0).select(x).sum()
    assert n_hi <= n_lo


def test_candidates_follow_the_histogram_by_hand():
    # history: 0..9 once each plus four extra 5.0 -> mean 5.0; with sigma large nothing is clipped.
    history = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 5, 5, 5, 5], dtype=torch.float)
    k = bin_count(len(history), "sturges")  # ceil(log2 14) + 1 = 5 bins of width 1.8 over [0, 9]
    assert k == 5
    # bin of 5.0 is [3.6, 5.4): values 4, 5, 5, 5, 5, 5 -> pmf 6/14 = 0.43; other bins hold 2 or 3 values
    mask = candidate_mask(torch.tensor([5.0, 4.0, 0.5, 8.5]), history, "sturges", sigma=10.0, theta=0.25)
    assert mask.tolist() == [True, True, False, False]


def test_nonfinite_never_selected_never_in_history():
    sel = AdonisSelector(theta=0.0, alpha=1.0)
    x = torch.tensor([1.0, float("nan"), 1.0, float("inf"), 1.0, -float("inf")])
    with pytest.warns(RuntimeWarning, match="non-finite"):
        keep = sel.select(x)
    assert keep.tolist() == [True, False, True, False, True, False]
    assert torch.isfinite(sel.history.view()).all() and sel.history.count == 3
    assert sel.nonfinite == 3


def test_bin_rules():
    assert bin_count(512, "sturges") == 10
    assert bin_count(512, "sqrt") == 23
    assert bin_count(512, "rice") == 16


def test_eta_reuse_cache():
    sel = AdonisSelector(eta=3, omega=-1)
    idx = torch.tensor([0, 1, 2])
    assert sel.needs_scoring(idx, 0).all()
    sel.select(torch.tensor([1.0, 2.0, 3.0]), idx, epoch=0)
    for e in (0, 1, 2):
        assert not sel.needs_scoring(idx, e).any()
    assert sel.needs_scoring(idx, 3).all()
    assert sel.cached_losses(idx).tolist() == [1.0, 2.0, 3.0]
    # a cached (reused) loss passed back in does not refresh the cache epoch
    sel.select(sel.cached_losses(idx), idx, epoch=2)
    assert sel.needs_scoring(idx, 3).all()


def test_warmup_keeps_everything_without_scoring():
    """Algorithm 1 line 11: epochs i ≤ ω (counted from 0) train on everything, so ω = 1 is two full epochs."""
    sel = AdonisSelector(omega=1)
    idx = torch.arange(5)
    assert not sel.needs_scoring(idx, 1).any()
    assert sel.select(torch.rand(5), idx, epoch=1).all()
    assert sel.needs_scoring(idx, 2).all()


def test_omega_counts_as_algorithm_1():
    """The default ω = 0 trains epoch 0 in full (``if i ≤ ω``); ω = −1 selects from the first batch."""
    assert [AdonisSelector().in_warmup(e) for e in range(3)] == [True, False, False]
    assert not AdonisSelector(omega=-1).in_warmup(0)
    with pytest.raises(ValueError, match="omega"):
        AdonisSelector(omega=-2)


def test_state_dict_round_trip_continues_identically():
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(64, generator=gen).exp() for _ in range(12)]
    a = AdonisSelector(history=128, theta=0.05, eta=2, seed=3)
    for e, b in enumerate(batches[:6]):
        a.select(b, torch.arange(64) + 64 * e, epoch=e // 3)
    b_sel = AdonisSelector(history=128, theta=0.05, eta=2, seed=99)
    b_sel.load_state_dict(a.state_dict())
    for e, b in enumerate(batches[6:], start=6):
        idx = torch.arange(64) + 64 * e
        assert torch.equal(a.select(b, idx, epoch=e // 3), b_sel.select(b, idx, epoch=e // 3))
    assert torch.equal(a.history.view(), b_sel.history.view())


def test_same_seed_same_selection():
    x = torch.rand(256)
    assert torch.equal(AdonisSelector(theta=0.01, seed=5).select(x), AdonisSelector(theta=0.01, seed=5).select(x))


@pytest.mark.parametrize("kw,needle", [
    (dict(alpha=0.0), "alpha=0.0"), (dict(alpha=1.5), "alpha=1.5"), (dict(theta=1.0), "theta=1.0"),
    (dict(theta=-0.1), "theta=-0.1"), (dict(sigma=0), "sigma=0"), (dict(history=1), "history=1"),
    (dict(bins="scott"), "bins='scott'"), (dict(eta=0), "eta=0"), (dict(eta=1.5), "eta must be an integer"),
])
def test_bad_parameters_fail_at_construction(kw, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        AdonisSelector(**kw)


def test_history_is_a_ring_of_the_newest_values():
    sel = AdonisSelector(history=4, theta=0.0, alpha=1.0)
    sel.select(torch.tensor([1.0, 2.0, 3.0]))
    sel.select(torch.tensor([4.0, 5.0, 6.0]))
    assert sorted(sel.history.view().tolist()) == [3.0, 4.0, 5.0, 6.0]


def test_a_restored_selector_keeps_its_own_eta_and_history_length():
    """A checkpoint restores data (cached losses, history, RNG), never parameters: a selector built with
    another η re-scores by its own η, and one with another history length keeps the newest losses."""
    a = AdonisSelector(history=4, theta=0.0, alpha=1.0, eta=3, omega=-1)
    idx = torch.arange(3)
    a.select(torch.tensor([1.0, 2.0, 3.0]), idx, epoch=0)
    a.select(torch.tensor([4.0, 5.0, 6.0]), idx + 3, epoch=0)
    state = a.state_dict()
    same = AdonisSelector(history=4, eta=3, omega=-1)
    same.load_state_dict(state)
    assert torch.equal(same.history.values, a.history.values) and same.history.pos == a.history.pos
    assert not same.needs_scoring(idx, 2).any()  # η 3: scored in epoch 0, fresh through epoch 2
    short = AdonisSelector(history=2, eta=1, omega=-1)
    short.load_state_dict(state)
    assert short.eta == short.cache.eta == 1 and short.needs_scoring(idx, 1).all()
    assert torch.equal(short.cached_losses(idx), torch.tensor([1.0, 2.0, 3.0]))
    assert short.history.view().tolist() == [5.0, 6.0]
    short.history.push(torch.tensor([7.0]))
    assert sorted(short.history.view().tolist()) == [6.0, 7.0]  # the oldest goes first
    long = AdonisSelector(history=8, omega=-1)
    long.load_state_dict(state)
    assert long.history.view().tolist() == [3.0, 4.0, 5.0, 6.0] and long.history.count == 4


def test_clamp_moves_high_losses_into_the_top_bin():
    """Figure 3 read as clamping: history values beyond mean + σ·std are moved to the edge, so a high loss
    lands in the (now dense) top bin and can pass θ; read as dropping, it is never a candidate."""
    history = torch.cat([torch.linspace(0.5, 1.5, 90), torch.full((10,), 10.0)])
    high = torch.tensor([10.0, 1.0])
    dropped = candidate_mask(high, history, "sturges", 1.0, 0.05, clip="drop")
    clamped = candidate_mask(high, history, "sturges", 1.0, 0.05, clip="clamp")
    assert dropped.tolist() == [False, True]
    assert clamped.tolist() == [True, True]
    # and through the selector: the clamp reading keeps the high-loss samples of a batch like the history
    for clip, expect in (("drop", 0), ("clamp", 10)):
        sel = AdonisSelector(history=100, theta=0.05, alpha=1.0, clip=clip, omega=-1)
        keep = sel.select(history)
        assert int(keep[90:].sum()) == expect


def test_alpha_cap_readings():
    """α caps ⌈α·n⌉ of the batch, ⌈α·|candidates|⌉, or nothing (every candidate kept)."""
    losses = torch.cat([torch.full((60,), 1.0), torch.linspace(5, 50, 40)])  # 60 in one dense bin
    kept = {}
    for cap in ("batch", "candidates", "none"):
        sel = AdonisSelector(history=100, theta=0.3, alpha=0.3, cap=cap, omega=-1, seed=0)
        keep = sel.select(losses)
        assert not keep[60:].any()  # the sparse tail is never a candidate
        kept[cap] = int(keep.sum())
    assert kept == {"batch": 30, "candidates": 18, "none": 60}
    with pytest.raises(ValueError, match="cap"):
        AdonisSelector(cap="most")
    with pytest.raises(ValueError, match="needs cap='batch'"):
        AdonisSelector(balance=True, cap="none")


def test_prune_keeps_the_unlearned_and_drops_a_share_of_the_learned():
    """The prune variant breaks the feedback loop: high, sparse losses (a class not learned yet) are always
    trained; of the well-learned samples (dense bins below the mean) a random share is dropped, and with
    rescale the rest weigh 1/(1−prune)."""
    gen = torch.Generator().manual_seed(0)
    learned = 0.05 + 0.01 * torch.rand(80, generator=gen)  # one dense bin of low losses
    starving = torch.linspace(2.0, 6.0, 20)  # high and spread out: never a candidate for the paper's rule
    losses = torch.cat([learned, starving])
    paper = AdonisSelector(history=100, theta=0.12, alpha=0.3, omega=-1).select(losses)
    assert not paper[80:].any()  # the paper's rule never trains them
    sel = AdonisSelector(history=100, theta=0.12, prune=0.75, rescale=True, omega=-1)
    keep = sel.select(losses)
    assert keep[80:].all()  # every high-loss sample is trained
    assert int(keep[:80].sum()) == 80 - math.floor(0.75 * 80)
    w = sel.last_weights
    assert torch.allclose(w[:80][keep[:80]], torch.full((20,), 4.0)) and (w[80:] == 1).all() and (w[~keep] == 0).all()
    # without rescale: the same choice, unweighted
    plain = AdonisSelector(history=100, theta=0.12, prune=0.75, omega=-1)
    assert torch.equal(plain.select(losses), keep) and (plain.last_weights[keep] == 1).all()
    with pytest.raises(ValueError, match="prune"):
        AdonisSelector(prune=1.0)
    with pytest.raises(ValueError, match="takes no"):
        AdonisSelector(prune=0.5, balance=True)


def test_prune_pool_dense_also_thins_a_dense_bin_above_the_mean():
    """prune_pool="dense" draws from every dense bin: a crowded bin of losses above the mean is thinned too,
    while the sparse high losses stay; the default pool ("learned") leaves that bin whole."""
    gen = torch.Generator().manual_seed(1)
    low = 0.10 + 0.01 * torch.rand(40, generator=gen)  # dense, below the mean
    mid = 1.00 + 0.01 * torch.rand(40, generator=gen)  # dense, above the mean (mean ≈ 0.8)
    sparse = torch.linspace(1.6, 2.2, 20)  # spread over the top bins: each below θ
    losses = torch.cat([low, mid, sparse])
    learned = AdonisSelector(history=100, theta=0.12, prune=0.5, omega=-1, sigma=3.0).select(losses)
    dense = AdonisSelector(history=100, theta=0.12, prune=0.5, omega=-1, sigma=3.0, prune_pool="dense").select(losses)
    assert learned[40:].all() and int(learned[:40].sum()) == 20
    assert dense[80:].all() and int(dense[:80].sum()) == 40
    assert int(dense[40:80].sum()) < 40  # the dense bin above the mean lost samples
    with pytest.raises(ValueError, match="prune_pool"):
        AdonisSelector(prune=0.5, prune_pool="all")
