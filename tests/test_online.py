"""The online loop on a real model and real data (scikit-learn digits), single process and 2-process gloo DDP."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from datareduce import AdonisSelector, OnlineSelection, RandomKeepSelector, SelectiveBackpropSelector


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
    loop = OnlineSelection(AdonisSelector(omega=-1, theta=0.05, alpha=0.5, eta=2), make_score_fn(model), rho=32)
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
    loop = OnlineSelection(SelectiveBackpropSelector(omega=-1), make_score_fn(model), rho=16)
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
    sel = AdonisSelector(omega=-1, theta=0.0, alpha=0.9 if rank else 0.2, seed=rank)
    model = torch.nn.Linear(64, 10)
    loop = OnlineSelection(sel, make_score_fn(model), rho=20)
    counts = []
    for epoch in range(2):
        counts.append(sum(1 for _ in loop.epoch(DataLoader(shard, batch_size=30), epoch, last=epoch == 1)))
    out[rank] = (counts, sel.history.count, len(loop.accumulator))
    dist.destroy_process_group()


def spawn_two(worker, timeout: float = 120) -> dict:
    """Run ``worker(rank, 2, port, out)`` in 2 gloo processes on a free port; ``out`` (rank → result) back.
    Fails (and kills both) if they have not finished within ``timeout`` seconds: a collective that one rank
    never reaches hangs the other."""
    import socket
    import time
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    ctx = mp.spawn(worker, args=(2, port, out), nprocs=2, join=False)
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"2-process run did not finish in {timeout:.0f} s (hang)")
    return dict(out)


def _ddp_planned_last_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    ds = digits()
    shard = list(range(rank, len(ds), world))
    # rank 1 keeps far more than rank 0, so its plan has many batches beyond the ones both ranks share
    sel = AdonisSelector(omega=-1, theta=0.0, alpha=0.9 if rank else 0.2, eta=2, seed=rank)
    loop = OnlineSelection(sel, make_score_fn(torch.nn.Linear(64, 10)), rho=20)
    counts = [sum(1 for _ in loop.epoch(DataLoader(torch.utils.data.Subset(ds, shard), batch_size=20), 0))]
    assert loop.can_plan(torch.tensor(shard), 1)
    chosen = loop.plan(torch.tensor(shard).split(20), 1, last=True)
    batches = list(loop.planned(DataLoader(torch.utils.data.Subset(ds, chosen.tolist()), batch_size=20)))
    counts.append(len(batches))
    dist.all_reduce(torch.zeros(1))  # a collective after the epoch: reached by both ranks only if in lockstep
    out[rank] = (counts, sum(len(b[0]) for b in batches), len(chosen), len(loop.carry))
    dist.destroy_process_group()


def test_ddp_planned_last_epoch_trains_the_same_number_of_batches():
    """A planned last epoch whose ranks kept very different numbers of samples: each trains its whole plan and
    both make the same number of steps (before the fix rank 1 made many more and the next collective hung)."""
    out = spawn_two(_ddp_planned_last_worker)
    assert out[0][0] == out[1][0]
    for rank in range(2):
        counts, trained, planned, carried = out[rank]
        assert trained == planned and carried == 0  # the last epoch leaves nothing behind
    assert out[1][2] > out[0][2] + 2 * 20  # rank 1 really held more than a batch beyond rank 0


def test_ddp_ranks_stay_in_lockstep():
    out = spawn_two(_ddp_worker)
    assert out[0][0] == out[1][0]  # same number of training batches per epoch on both ranks
    assert out[0][1] == out[1][1] == 512  # history filled from both ranks' losses
    assert out[0][2] == out[1][2] == 0  # the last epoch trained every queued sample, on both ranks


def _loss_epoch(loop, loader, epoch, model, opt, planned=None):
    """Train one epoch through ``loop`` (streamed, or planned over ``planned`` index batches); kept indices."""
    if planned is not None:
        chosen = loop.plan(planned, epoch)
        source = loop.planned(DataLoader(torch.utils.data.Subset(digits(), chosen.tolist()), batch_size=loop.rho))
    else:
        source = loop.epoch(loader, epoch)
    trained = []
    for x, y, idx in source:
        opt.zero_grad()
        losses = F.cross_entropy(model(x), y, reduction="none")
        losses.mean().backward()
        opt.step()
        loop.record_training_losses(idx, losses, epoch)
        trained.append(idx)
    return torch.cat(trained) if trained else torch.zeros(0, dtype=torch.long)


def test_planned_epoch_selects_exactly_what_streaming_selects():
    """A planned η-reuse epoch makes the same choices from cached losses as the streamed epoch, loads only the
    kept samples, and trains the same samples in the same batches."""
    ds = digits()
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(3))
    loader = DataLoader(torch.utils.data.Subset(ds, order.tolist()), batch_size=32)
    runs = []
    for plan in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Linear(64, 10)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        loop = OnlineSelection(AdonisSelector(omega=-1, theta=0.05, alpha=0.5, eta=3, seed=1), make_score_fn(model), rho=32)
        _loss_epoch(loop, loader, 0, model, opt)  # scores everything
        assert loop.can_plan(order, 1)
        trained = _loss_epoch(loop, loader, 1, model, opt, planned=order.split(32) if plan else None)
        runs.append((loop.kept_indices(), trained, loop.stats, loop.accumulator, loop.carry))
    (kept_s, trained_s, st_s, acc_s, _), (kept_p, trained_p, st_p, _, carry_p) = runs
    assert torch.equal(kept_s, kept_p) and len(kept_p) > 0
    assert torch.equal(trained_s, trained_p)
    assert st_s.scored == st_p.scored == 0
    assert st_s.loaded == len(ds) and st_p.loaded == len(trained_p) < len(ds)
    assert len(acc_s) == len(carry_p)  # the same remainder, queued as tensors vs carried as indices


def test_carry_from_planned_epoch_is_loaded_and_trained_next_epoch():
    ds = digits()
    loader = DataLoader(ds, batch_size=50)
    model = torch.nn.Linear(64, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loop = OnlineSelection(AdonisSelector(omega=-1, theta=0.05, alpha=0.5, eta=2), make_score_fn(model), rho=32,
                           load_fn=lambda idx: tuple(torch.stack(t) for t in zip(*[ds[int(i)] for i in idx])))
    trained, selected = [], 0
    for epoch in range(3):  # streamed (scores all), planned (η-reuse), streamed (rescored)
        planned = torch.arange(len(ds)).split(50) if epoch == 1 else None
        trained.append(_loss_epoch(loop, loader, epoch, model, opt, planned=planned))
        selected += loop.stats.selected
        if epoch == 1:
            carried = loop.carry.clone()
            assert 0 < len(carried) < 32 and len(loop.accumulator) == 0
    assert torch.equal(trained[2][: len(carried)], carried)  # the carry is trained first
    assert loop.stats.loaded == len(ds) + len(carried)
    assert sum(len(t) for t in trained) + len(loop.accumulator) == selected  # nothing lost, nothing twice


def test_training_losses_refresh_the_cache():
    ds = digits()
    loader = DataLoader(ds, batch_size=50)
    scored = {}
    for reuse in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Linear(64, 10)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        loop = OnlineSelection(AdonisSelector(omega=-1, theta=0.05, alpha=0.5, eta=2), make_score_fn(model), rho=32,
                               reuse_train_losses=reuse)
        _loss_epoch(loop, loader, 0, model, opt)
        trained = _loss_epoch(loop, loader, 1, model, opt)
        cache = loop.selector.cache
        if reuse:  # the trained samples' losses are the training forward's, stamped epoch 1
            assert bool((cache.epoch[trained] == 1).all())
        _loss_epoch(loop, loader, 2, model, opt)
        scored[reuse] = loop.stats.scored
    assert scored[False] == len(ds)
    assert scored[True] < len(ds)  # samples trained in epoch 1 are still fresh in epoch 2
    with pytest.raises(ValueError, match="loss-caching selector"):
        OnlineSelection(RandomKeepSelector(), make_score_fn(model), rho=8, reuse_train_losses=True)


def _ddp_cache_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    ds = digits()
    model = torch.nn.Linear(64, 10)
    loop = OnlineSelection(AdonisSelector(omega=-1, theta=0.05, alpha=0.5, eta=2, seed=rank), make_score_fn(model), rho=16)
    scored, plannable = [], []
    for epoch in range(2):  # each epoch the shards are re-dealt: a sample changes rank
        shard = [i for i in range(1792) if (i // 7 + epoch) % world == rank]  # 896 a rank
        plannable.append(loop.can_plan(torch.tensor(shard), epoch))
        list(loop.epoch(DataLoader(torch.utils.data.Subset(ds, shard), batch_size=40), epoch))
        scored.append(loop.stats.scored)
    out[rank] = (scored, plannable)
    dist.destroy_process_group()


def test_ddp_ranks_share_fresh_losses():
    """Under DDP every rank caches every rank's scored losses, so η-reuse holds after the shards are re-dealt."""
    out = spawn_two(_ddp_cache_worker)
    for rank in range(2):
        scored, plannable = out[rank]
        assert scored[0] > 0 and scored[1] == 0
        assert plannable == [False, True]


def test_partly_stale_batches_are_scored_in_buckets():
    """score_bucket tops the stale rows up with fresh ones to a multiple of the bucket; only the stale samples
    get the new losses, the others keep their cached ones."""
    ds = digits()
    seen = []
    model = torch.nn.Linear(64, 10)
    base = make_score_fn(model)

    def score(batch):
        seen.append(len(batch[0]))
        return base(batch)

    loop = OnlineSelection(AdonisSelector(omega=-1, eta=5), score, rho=16, score_bucket=16)
    x, y, idx = ds[:40]
    loop.selector.remember(idx[:30], torch.full((30,), 7.0), epoch=0)  # 30 fresh, 10 stale
    losses = loop.losses_for((x, y, idx), idx, epoch=1)
    assert seen == [16] and loop.stats.scored == 16
    assert torch.equal(losses[:30], torch.full((30,), 7.0))
    assert torch.allclose(losses[30:], base((x[30:], y[30:], idx[30:])))
    seen.clear()
    OnlineSelection(AdonisSelector(omega=-1, eta=5), score, rho=16).losses_for((x, y, idx), idx, epoch=0)
    assert seen == [40]  # all stale: the whole batch, whatever the bucket


def test_an_epoch_with_few_stale_losses_scores_them_first_and_is_planned():
    """A few stale losses (here 10 of 1,797, made stale by hand) no longer force a streamed epoch: with a
    ``load_fn`` they are loaded by index and scored before the plan; a quarter or more stale, or no
    ``load_fn``, streams."""
    ds = digits()
    model = torch.nn.Linear(64, 10)
    load = lambda idx: tuple(torch.stack(t) for t in zip(*[ds[int(i)] for i in idx]))  # noqa: E731
    ids = torch.arange(len(ds))
    loops = {}
    for name, load_fn in (("loads", load), ("cannot load", None)):
        loop = OnlineSelection(AdonisSelector(omega=-1, theta=0.05, alpha=0.5, eta=2), make_score_fn(model), rho=32,
                               load_fn=load_fn)
        list(loop.epoch(DataLoader(ds, batch_size=50), 0))  # scores every sample, fresh through epoch 1
        loop.selector.cache.epoch[:10] = -5
        loops[name] = loop
    assert not loops["cannot load"].can_plan(ids, 1)
    loop = loops["loads"]
    assert loop.can_plan(ids, 1)
    chosen = loop.plan(ids.split(50), 1)
    assert loop.stats.scored == loop.stats.loaded == 10
    assert bool((loop.selector.cache.epoch[:10] == 1).all())  # refreshed in epoch 1
    assert not bool(loop.selector.needs_scoring(ids, 1).any()) and 0 < len(chosen) < len(ds)
    loop.selector.cache.epoch[: len(ds) // 4 + 1] = -5
    assert not loop.can_plan(ids, 1)


def test_composer_and_online_selection_book_the_loss_means_alike():
    """ComposerSelection books its selections with the core's bookkeeping: the loss means over the finite losses
    (non-finite ones never kept), the kept samples, and trained samples and batches, as OnlineSelection does."""
    from datareduce.composer_sb import ComposerSBSelector
    from datareduce.online import ComposerSelection

    losses = torch.rand(40, generator=torch.Generator().manual_seed(0))
    losses[::9] = float("nan")
    loader = [(torch.zeros(10, 1), torch.zeros(10, dtype=torch.long), torch.arange(i, i + 10)) for i in (0, 10, 20, 30)]
    loop = ComposerSelection(ComposerSBSelector(keep=0.5, start=0, end=1, interrupt=2), lambda b: losses[b[2]], 1)
    kept = torch.cat([b[2] for b in loop.epoch(loader, 0)])
    scored = torch.cat([b[2] for i, b in enumerate(loader) if i % 2 == 0])  # every 2nd batch trains in full
    finite = scored[torch.isfinite(losses[scored])]
    rec = loop.epoch_record()
    assert (rec["samples_scored"], rec["samples_selected"], rec["samples_backprop"], rec["train_batches"]) == (
        20, len(kept), len(kept), 4)
    assert rec["mean_loss_all"] == pytest.approx(float(losses[finite].mean()))
    kept_scored = kept[torch.isin(kept, scored)]
    assert torch.isfinite(losses[kept_scored]).all()
    assert rec["mean_loss_kept"] == pytest.approx(float(losses[kept_scored].mean()))


def test_reuse_gate_scores_everything_while_mosaic_is_on():
    """The rule of every detection host (datareduce.online.ReuseGate): with mosaic on every sample is scored and
    nothing is cached; once it is off η-reuse starts from an empty cache, then reuses for η epochs."""
    from datareduce.online import ReuseGate

    torch.manual_seed(0)
    model = torch.nn.Linear(64, 10)
    loader = DataLoader(digits(), batch_size=50)
    gate = ReuseGate(AdonisSelector(omega=-1, theta=0.05, alpha=0.5, eta=3))
    loop = OnlineSelection(gate, make_score_fn(model), rho=32)
    scored = []
    for epoch, mosaic in enumerate([True, True, False, False, False, False]):
        assert gate.follow_mosaic(mosaic) is (not mosaic) is gate.reuse
        list(loop.epoch(loader, epoch))
        scored.append(loop.stats.scored)
    n = len(loader.dataset)
    assert scored == [n, n, n, 0, 0, n]  # η 3 from epoch 2 on: scored at 2, reused at 3 and 4, scored at 5
    assert gate.eta == 3 and gate.state_dict().keys() == gate.selector.state_dict().keys()  # the selector's own


def test_mosaic_reuse_line_says_when_eta_applies():
    from datareduce.config import ReduceConfig
    from datareduce.flags import add_reduce_arguments, config_from_args
    from datareduce.online import mosaic_reuse_line

    def cfg(*flags):
        import argparse

        return config_from_args(add_reduce_arguments(argparse.ArgumentParser()).parse_args(list(flags)), seed=0)

    eta3 = cfg("--adonis-eta", "3")
    assert mosaic_reuse_line(eta3, "hyp mosaic 1", 300) == (
        "datareduce: mosaic is on for the whole run (hyp mosaic 1): every image is scored each epoch, so "
        "--adonis-eta 3 reuses no loss (η-reuse needs mosaic off)")
    assert mosaic_reuse_line(eta3, "mosaic=1.0, close_mosaic=10", 100, 90) == (
        "datareduce: mosaic is on for the first 90 of 100 epochs (mosaic=1.0, close_mosaic=10): every image is "
        "scored each epoch until it is off; --adonis-eta 3 applies from then on (the last 10)")
    assert mosaic_reuse_line(eta3, "m", 100, 0) is None  # mosaic closed from the start
    assert mosaic_reuse_line(eta3, "m", 5, -5) is None
    assert mosaic_reuse_line(cfg("--adonis-eta", "1"), "m", 100) is None  # η 1 re-scores every epoch anyway
    assert "--sb-eta 2 reuses no loss" in mosaic_reuse_line(cfg("--reduce", "stale-sb"), "m", 100)
    assert mosaic_reuse_line(cfg("--reduce", "random-keep"), "m", 100) is None
    assert isinstance(eta3, ReduceConfig)
