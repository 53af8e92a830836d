"""The issue-7 variants of ADONIS: each does what it says, and all are off by default."""
import math

import pytest
import torch

from datareduce import AdonisSelector, OnlineSelection, RandomKeepSelector
from datareduce.adonis import balanced_cap, candidate_mask


def skewed_batch(n=200, seed=0):
    """Class 0 has tightly clustered (typical) losses, class 1 spread-out ones: faithful ADONIS favours class 0."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    losses = torch.where(labels == 0, 1.0 + 0.01 * torch.rand(n, generator=g), 3 * torch.rand(n, generator=g))
    return losses, labels


def test_faithful_is_imbalanced_and_balance_fixes_it():
    losses, labels = skewed_batch()
    plain = AdonisSelector(theta=0.05, alpha=0.3, seed=0).select(losses)
    counts = torch.bincount(labels[plain], minlength=2)
    assert counts[0] > 3 * counts[1]
    bal = AdonisSelector(theta=0.05, alpha=0.3, seed=0, balance=True).select(losses, labels=labels)
    per_class = torch.bincount(labels[bal], minlength=2)
    quota = math.ceil(0.3 * 100)
    assert per_class.max() <= quota  # no class exceeds ⌈α·n_c⌉
    with pytest.raises(ValueError, match="needs labels"):
        AdonisSelector(balance=True).select(losses)


def test_balanced_cap_by_hand():
    mask = torch.tensor([True, True, True, False, True, True])
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    keep = balanced_cap(mask, labels, torch.tensor([2, 5]), torch.Generator().manual_seed(0))
    assert int(keep[:4].sum()) == 2 and not keep[3] and keep[4] and keep[5]


def test_floor_keeps_random_samples_even_without_candidates():
    # theta so high that nothing is a candidate: only the floor is kept
    losses = torch.rand(100)
    sel = AdonisSelector(theta=0.99, alpha=0.3, floor=0.1, seed=1)
    keep = sel.select(losses)
    assert int(keep.sum()) == 10
    assert int(AdonisSelector(theta=0.99, alpha=0.3, seed=1).select(losses).sum()) == 0
    # floor + candidates stay inside the α budget
    keep = AdonisSelector(theta=0.0, alpha=0.3, floor=0.1, seed=1).select(losses)
    assert int(keep.sum()) == 30
    with pytest.raises(ValueError, match="floor=0.5"):
        AdonisSelector(alpha=0.3, floor=0.5)


def test_rescale_weights_are_inverse_keep_rates():
    losses, _ = skewed_batch()
    sel = AdonisSelector(theta=0.05, alpha=0.3, floor=0.1, rescale=True, seed=2)
    keep = sel.select(losses)
    w = sel.last_weights
    cand = candidate_mask(losses, sel.history.view(), "sturges", 1.0, 0.05)
    assert torch.all(w[~keep] == 0)
    assert w[keep].mean().item() == pytest.approx(1.0)
    for stratum in (cand, ~cand):  # one weight per stratum
        kept = keep & stratum
        assert kept.any() and torch.allclose(w[kept], w[kept][0].expand(int(kept.sum())))
    # weight × keep rate is the same constant in both strata (inverse inclusion probability)
    k_c, k_n = keep & cand, keep & ~cand
    assert (w[k_c][0] * k_c.sum() / cand.sum()).item() == pytest.approx((w[k_n][0] * k_n.sum() / (~cand).sum()).item())


def test_anneal_trains_last_epochs_in_full():
    sel = AdonisSelector(anneal=2, epochs=10)
    assert not sel.in_warmup(7) and sel.in_warmup(8) and sel.in_warmup(9)
    assert sel.select(torch.rand(10), epoch=9).all()
    with pytest.raises(ValueError, match="needs epochs"):
        AdonisSelector(anneal=2)


def test_decay_weights_recent_history_more():
    sel = AdonisSelector(history=200, decay=0.1, theta=0.3, alpha=1.0, sigma=3.0)
    sel.select(torch.full((100,), 5.0))  # old batch: all at 5
    keep = sel.select(torch.cat([torch.full((99,), 1.0), torch.tensor([5.0])]))  # new batch mostly at 1
    assert keep[:99].all() and not keep[99]  # the old mode at 5 is down-weighted below θ
    plain = AdonisSelector(history=200, theta=0.3, alpha=1.0, sigma=3.0)
    plain.select(torch.full((100,), 5.0))
    assert plain.select(torch.cat([torch.full((99,), 1.0), torch.tensor([5.0])]))[99]


def test_rescaled_loop_carries_weights():
    x = torch.randn(64, 3)
    y = torch.arange(64) % 2
    batches = [(x[i:i + 16], y[i:i + 16], torch.arange(i, i + 16)) for i in range(0, 64, 16)]
    sel = AdonisSelector(theta=0.0, alpha=0.5, floor=0.25, rescale=True)
    loop = OnlineSelection(sel, lambda b: b[0].pow(2).sum(1), rho=8)
    out = list(loop.epoch(batches, 0, last=True))
    assert loop.weighted and all(len(b) == 4 and (b[3] > 0).all() for b in out)


def test_random_keep_control_rate():
    sel = RandomKeepSelector(0.3, seed=0)
    assert abs(sel.select(torch.zeros(20000)).float().mean().item() - 0.3) < 0.02
