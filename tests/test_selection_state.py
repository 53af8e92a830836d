"""Every rank's online-selection state through a checkpoint (datareduce.selection_state), on real digits data:
a resumed rank selects with its own selector RNG and queue, as the uninterrupted run's rank does."""
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from datareduce import OnlineSelection, SelectiveBackpropSelector
from datareduce.selection_state import gather_states, restore_state
from test_online import digits, make_score_fn

WORLD = 2


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    ds, model = digits(), torch.nn.Linear(64, 10)
    loaders = [DataLoader(Subset(ds, range(rank, 600, WORLD)), batch_size=40) for rank in range(WORLD)]
    return loaders, make_score_fn(model)


def selection(rank, score):
    """Rank ``rank``'s loop as a host builds it: SB's draws seeded by the rank, batches of 32 (a queue remains)."""
    return OnlineSelection(SelectiveBackpropSelector(beta=1.0, history=256, seed=rank, omega=-1), score, rho=32)


def kept(loop, loader, epoch):
    return [b[2].tolist() for b in loop.epoch(loader, epoch)]


def test_each_rank_resumes_with_its_own_state(setup):
    loaders, score = setup
    ranks = [selection(rank, score) for rank in range(WORLD)]
    for loop, loader in zip(ranks, loaders):
        kept(loop, loader, 0)
    states = [loop.state_dict() for loop in ranks]  # what gather_states holds on a 2-rank job
    assert all(len(loop.accumulator) for loop in ranks)  # each rank checkpoints a partial queue of its own
    uninterrupted = [kept(loop, loader, 1) for loop, loader in zip(ranks, loaders)]
    resumed = selection(1, score)
    assert restore_state(resumed, states, rank=1, world_size=WORLD)
    assert kept(resumed, loaders[1], 1) == uninterrupted[1]
    wrong = selection(1, score)  # rank 0's queue and draws on rank 1's shard: another selection
    wrong.load_state_dict(states[0])
    assert kept(wrong, loaders[1], 1) != uninterrupted[1]


def test_another_world_size_resumes_every_rank_with_rank_0s_state(setup):
    loaders, score = setup
    ranks = [selection(rank, score) for rank in range(WORLD)]
    for loop, loader in zip(ranks, loaders):
        kept(loop, loader, 0)
    one = selection(0, score)
    with pytest.warns(RuntimeWarning, match="2 rank"):
        assert restore_state(one, [loop.state_dict() for loop in ranks])  # this process: 1 rank
    assert kept(one, loaders[0], 1) == kept(ranks[0], loaders[0], 1)


def test_one_process_gathers_its_own_state_and_none_for_no_selection(setup):
    loop = selection(0, setup[1])
    states = gather_states(loop)
    assert len(states) == 1 and states[0].keys() == loop.state_dict().keys()
    assert gather_states(None) == [] and not restore_state(loop, []) and not restore_state(None, states)
