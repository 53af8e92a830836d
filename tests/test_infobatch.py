import math

import pytest
import torch

from datareduce import InfoBatchPruner


def test_first_epoch_visits_everything():
    p = InfoBatchPruner(100, num_epochs=8)
    visit = p.plan(0)
    assert sorted(visit.tolist()) == list(range(100))
    assert torch.equal(p.loss_weights(visit), torch.ones(100))


def test_prunes_below_mean_and_rescales():
    n = 1000
    p = InfoBatchPruner(n, num_epochs=8, ratio=0.5, delta=0.875, seed=0)
    losses = torch.linspace(0, 2, n)
    p.update(torch.arange(n), losses)
    visit = p.plan(1)
    well = (losses < losses.mean()).nonzero().flatten()
    hard = (losses >= losses.mean()).nonzero().flatten()
    assert set(hard.tolist()) <= set(visit.tolist())
    kept_well = sorted(set(visit.tolist()) & set(well.tolist()))
    assert len(kept_well) == int(0.5 * len(well))
    assert torch.allclose(p.loss_weights(torch.tensor(kept_well)), torch.full((len(kept_well),), 2.0))
    assert torch.equal(p.loss_weights(hard), torch.ones(len(hard)))
    # expected weighted count of well-learned samples equals their true count (unbiased gradient)
    assert p.loss_weights(torch.tensor(kept_well)).sum() == pytest.approx(len(well), abs=2)


def test_anneals_to_full_data():
    p = InfoBatchPruner(100, num_epochs=8, delta=0.875)
    p.update(torch.arange(100), torch.rand(100))
    assert p.pruning(6) and not p.pruning(math.ceil(0.875 * 8))
    assert len(p.plan(7)) == 100


def test_bad_ratio():
    with pytest.raises(ValueError, match="ratio=1.0"):
        InfoBatchPruner(10, 2, ratio=1.0)
