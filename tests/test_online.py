"""The online loop on a real model and real data (scikit-learn digits), single process and 2-process gloo DDP."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from datareduce import AdonisSelector, OnlineSelection, SelectiveBackpropSelector


def digits():
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target)
    return TensorDataset(x, y, torch.arange(len(y)))


def make_score_fn(model):
    def score(batch):
        with torch.no_grad():
            return F.cross_entropy(model(batch[0]), batch[1], reduction="none")
    return score


def test_yields_exact_rho_and_carries_over_epochs():
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 10)
    loader = DataLoader(digits(), batch_size=50, shuffle=True, generator=torch.Generator().manual_seed(0))
    loop = OnlineSelection(AdonisSelector(theta=0.05, alpha=0.5, eta=2), make_score_fn(model), rho=32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    total_selected = total_trained = 0
    for epoch in range(3):
        batches = list(loop.epoch(loader, epoch, last=epoch == 2))
        for b in batches[:-1] if epoch == 2 else batches:
            assert len(b[0]) == 32
        for x, y, _ in batches:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        st = loop.stats
        assert st.train_batches == len(batches) <= loop.max_batches(len(loader.dataset))
        total_selected += st.selected
        total_trained += st.backprop
        if epoch == 1:  # eta=2: everything scored in epoch 0 is still fresh
            assert st.scored == 0
        else:
            assert st.scored == len(loader.dataset)
    assert total_trained == total_selected  # nothing lost, nothing trained twice
    assert 0 < total_selected < 3 * len(loader.dataset)


def test_scoring_leaves_model_unchanged():
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loop = OnlineSelection(SelectiveBackpropSelector(), make_score_fn(model), rho=16)
    list(loop.epoch(DataLoader(digits(), batch_size=64), 0))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def _ddp_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(rank)
    ds = digits()
    shard = torch.utils.data.Subset(ds, list(range(rank, len(ds), world)))
    # rank 1 keeps far more than rank 0: their buffers fill at different rates
    sel = AdonisSelector(theta=0.0, alpha=0.9 if rank else 0.2, seed=rank)
    model = torch.nn.Linear(64, 10)
    loop = OnlineSelection(sel, make_score_fn(model), rho=20)
    counts = []
    for epoch in range(2):
        counts.append(sum(1 for _ in loop.epoch(DataLoader(shard, batch_size=30), epoch, last=epoch == 1)))
    out[rank] = (counts, sel.history.count)
    dist.destroy_process_group()


def test_ddp_ranks_stay_in_lockstep():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, port, out), nprocs=2, join=True)
    assert out[0][0] == out[1][0]  # same number of training batches per epoch on both ranks
    assert out[0][1] == out[1][1] == 512  # history filled from both ranks' losses
