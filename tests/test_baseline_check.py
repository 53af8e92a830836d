"""Our InfoBatch and Selective Backprop against the behaviour of their authors' published code.

Each test states, as a property, what the authors' code does (NUS-HPC-AI-Lab/InfoBatch ``infobatch/infobatch.py``
and ``research/infobatch.py``; angelajiang/SelectiveBackprop ``lib/calculators.py``, ``lib/hist.py``,
``lib/selectors.py``); their code is neither copied nor imported. ``bench/check_baselines.py`` runs the same
comparison side by side on synthetic loss sequences and ``bench/baseline_check.md`` records it.
"""
import pytest
import torch

from datareduce import InfoBatchPruner, SelectiveBackpropSelector


# ------------------------------------------------------------------------------------------------ InfoBatch
@pytest.mark.parametrize("epochs, delta, pruned", [
    (30, 0.875, 26),  # δ·N = 26.25: epochs 0…25 prune, 26…29 anneal (the 30-epoch run)
    (12, 0.875, 10),  # 10.5
    (100, 0.55, 55),  # 55.00000000000001 in floating point: still 55, not 56
    (8, 0.875, 7),  # an integer δ·N is unchanged
    (200, 0.875, 175),  # the authors' CIFAR setting
    (3, 0.5, 1),
    (2, 0.875, 1),
])
def test_infobatch_prunes_the_epochs_whose_count_is_within_delta_times_epochs(epochs, delta, pruned):
    """The authors' sampler prunes epoch e (from 0) while e + 1 ≤ δ·N (its iteration counter is one ahead of
    the epoch: the constructor already drew one plan), i.e. the first ⌊δ·N⌋ epochs, then anneals."""
    p = InfoBatchPruner(100, num_epochs=epochs, delta=delta)
    flags = [p.pruning(e) for e in range(epochs)]
    assert flags == [True] * pruned + [False] * (epochs - pruned)


def test_infobatch_annealing_epochs_visit_everything_unweighted():
    """Annealing is plain full-data training: every sample once, every weight 1 (the paper's rule and the
    research code's; the released package leaves the last pruned epoch's weights in place when δ·N is not an
    integer, see bench/baseline_check.md: we do not reproduce that)."""
    n, epochs = 500, 30
    p = InfoBatchPruner(n, num_epochs=epochs, delta=0.875, seed=0)
    gen = torch.Generator().manual_seed(0)
    for e in range(epochs):
        visit = p.plan(e)
        w = p.loss_weights(visit)
        if p.pruning(e):
            assert set(w.unique().tolist()) <= {1.0, 2.0}
        else:
            assert sorted(visit.tolist()) == list(range(n)) and torch.equal(w, torch.ones(n))
        p.update(visit, torch.rand(len(visit), generator=gen) * (2.0 - e / epochs))


def test_infobatch_threshold_is_the_mean_of_all_scores_including_stale_ones():
    """A pruned sample keeps its old (low) score; the threshold is the mean over every sample's score, visited
    or not; all samples at or above it are visited, int(keep · |below|) of the others, at weight 1/keep."""
    n = 1000
    p = InfoBatchPruner(n, num_epochs=10, ratio=0.5, delta=1.0, seed=3)
    p.plan(0)
    p.update(torch.arange(n), torch.linspace(0.0, 2.0, n))
    visit = p.plan(1)
    p.update(visit, torch.full((len(visit),), 5.0))  # only the visited samples' scores move
    scores = torch.linspace(0.0, 2.0, n)
    scores[visit] = 5.0
    assert torch.equal(p.scores, scores)
    visit2 = p.plan(2)
    below = (scores < scores.mean()).nonzero().flatten()
    above = (scores >= scores.mean()).nonzero().flatten()
    assert set(above.tolist()) <= set(visit2.tolist())
    kept = sorted(set(visit2.tolist()) & set(below.tolist()))
    assert len(kept) == int(0.5 * len(below)) and len(visit2) == len(above) + len(kept)
    assert torch.equal(p.loss_weights(torch.tensor(kept)), torch.full((len(kept),), 2.0))
    assert torch.equal(p.loss_weights(above), torch.ones(len(above)))


# --------------------------------------------------------------------------------------- Selective Backprop
def test_sb_percentile_counts_only_strictly_lower_losses():
    """SB's keep probability is (share of the history *strictly below* the loss)^β, the batch pushed into the
    history first (lib/hist.py percentile_of_score, lib/calculators.py get_probability): a batch of ties
    with everything in the history is never kept, and in a batch of distinct losses that is the whole history
    the lowest has probability 0 and the highest ((n−1)/n)^β."""
    beta = 3.0
    sel = SelectiveBackpropSelector(beta=beta, history=1024, omega=-1, seed=0)
    losses = torch.arange(1, 9, dtype=torch.float)  # 8 distinct losses into an empty history
    sel.observe(losses)
    prob = sel.keep_probability(losses)
    assert torch.allclose(prob, (torch.arange(8, dtype=torch.float) / 8) ** beta)
    assert prob[0] == 0 and prob[-1] == pytest.approx((7 / 8) ** beta)

    ties = SelectiveBackpropSelector(beta=beta, history=64, omega=-1, seed=0)
    ties.history.push(torch.cat([torch.full((32,), 0.5), torch.full((16,), 0.1), torch.full((16,), 0.9)]))
    x = torch.full((16,), 0.5)
    ties.observe(x)  # overwrites 16 of the 0.5s: 16 × 0.1 below, 32 × 0.5 tied (the batch among them), 16 × 0.9
    assert torch.allclose(ties.keep_probability(x), torch.full((16,), (16 / 64) ** beta))
    never = SelectiveBackpropSelector(beta=1.0, history=32, omega=-1, seed=0)
    assert not never.select(torch.full((32,), 0.7)).any()  # all tied: nothing is strictly below


def test_sb_priming_epoch_keeps_everything_and_leaves_the_history_empty():
    """The first epoch (num_images_to_prime = the training set) trains every sample through the baseline
    selector, which never reads a loss, so the history starts filling in epoch 1 (lib/selectors.py)."""
    sel = SelectiveBackpropSelector(beta=3.0, omega=0, seed=0)
    keep = sel.select(torch.rand(128), torch.arange(128), epoch=0)
    assert keep.all() and sel.history.count == 0
    sel.select(torch.rand(128), torch.arange(128), epoch=1)
    assert sel.history.count == 128


# ------------------------------------------------------------------------------------------- the script
def test_check_script_agrees_with_the_restated_rules_on_small_sizes():
    """bench/check_baselines.py: on the same scores the two InfoBatch rules prune the same set sizes with the
    same weights, and the two SB rules give the same keep probabilities."""
    from bench import check_baselines as cb

    ib = cb.infobatch_same_scores(n=600, epochs=12, seed=1)
    for row in ib:
        assert row["ours_visited"] == row["authors_visited"] and row["same_hard_set"]
        assert row["ours_weights"] == row["authors_weights"]
    sb = cb.sb_same_losses(n=600, epochs=3, batch=64, beta=3.0, seed=1)
    assert sb["max_abs_prob_diff"] < 1e-6
