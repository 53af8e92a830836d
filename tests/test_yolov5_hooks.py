"""The hooks patches/yolov5-train.patch calls, on real COCO128 images in YOLOv5's batch format.

YOLOv5 itself is not installable, so its objects are stood in for: a small real detection network whose raw
outputs have YOLOv5's layout (layers of (B, anchors, H, W, 5 + classes)) and a loss with ``ComputeLoss``'s call
contract — ``loss(p, targets) -> (loss * batch_size, items)``, box and class terms averaged over the batch's
matched targets, objectness over the batch's grid. tests/test_patches_upstream.py repeats the key identities with
YOLOv5's own ``ComputeLoss`` when a checkout is given.
"""
import argparse
import contextlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from datareduce import manifest
from datareduce._validate import UsageError
from datareduce.accumulator import BatchAccumulator
from datareduce.integrations import yolov5 as y5
from datareduce.report.runs import load_run

NC, NA, SIZE = 80, 3, 96
RESULTS = (0.5, 0.4, 0.3, 0.2, 0.05, 0.04, 0.03)  # validation's (P, R, mAP@.5, mAP@.5:.95, losses) as YOLOv5 gives it


# ------------------------------------------------------------------------------------------ stand-ins
class TinyDetector(nn.Module):
    """Three detection layers (strides 8, 16, 32) in YOLOv5's raw train-mode output layout."""

    def __init__(self, nc=NC, na=NA):
        super().__init__()
        self.nc, self.na = nc, na

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())

        self.stem = nn.Sequential(block(3, 8), block(8, 16), block(16, 16))  # stride 8
        self.down4, self.down5 = block(16, 32), block(32, 32)
        self.heads = nn.ModuleList(nn.Conv2d(c, na * (5 + nc), 1) for c in (16, 32, 32))

    def forward(self, x):
        p3 = self.stem(x)
        p4 = self.down4(p3)
        p5 = self.down5(p4)
        out = []
        for head, f in zip(self.heads, (p3, p4, p5)):
            b, _, h, w = f.shape
            out.append(head(f).view(b, self.na, 5 + self.nc, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return out


class StandInComputeLoss:
    """ComputeLoss's contract and reductions: per layer, box/cls means over the batch's matched targets,
    objectness BCE mean over the batch's whole grid (weighted by ``balance``); returns (loss * bs, items)."""

    def __init__(self, nc=NC, box=0.05, obj=1.0, cls=0.5, autobalance=False):
        self.nc, self.gains, self.autobalance = nc, (box, obj, cls), autobalance
        self.balance = [4.0, 1.0, 0.4]

    def __call__(self, p, targets):
        dev = p[0].device
        lbox, lobj, lcls = (torch.zeros(1, device=dev) for _ in range(3))
        for i, pi in enumerate(p):
            b_, na, h, w, _ = pi.shape
            tobj = torch.zeros(pi.shape[:4], device=dev)
            if len(targets):
                b, c = targets[:, 0].long(), targets[:, 1].long()
                gx, gy = (targets[:, 2] * w).clamp(0, w - 1e-3), (targets[:, 3] * h).clamp(0, h - 1e-3)
                gi, gj = gx.long(), gy.long()
                a = torch.zeros_like(b)
                ps = pi[b, a, gj, gi]
                txy = torch.stack((gx - gi, gy - gj), 1)
                lbox += ((ps[:, :2].sigmoid() - txy) ** 2).mean()
                lbox += ((ps[:, 2:4].sigmoid() - targets[:, 4:6]) ** 2).mean()
                tobj[b, a, gj, gi] = 1.0
                t = torch.zeros(len(b), self.nc, device=dev)
                t[torch.arange(len(b)), c] = 1.0
                lcls += F.binary_cross_entropy_with_logits(ps[:, 5:], t)
            obji = F.binary_cross_entropy_with_logits(pi[..., 4], tobj)
            lobj += obji * self.balance[i]
            if self.autobalance:
                self.balance[i] = self.balance[i] * 0.9999 + 0.0001 / obji.detach().item()
        box, obj, cls = self.gains
        bs = p[0].shape[0]
        return (lbox * box + lobj * obj + lcls * cls) * bs, torch.cat((lbox, lobj, lcls)).detach()


# ------------------------------------------------------------------------------------------ real data
def load_batch(root: Path, files, size=SIZE):
    """COCO128 images and YOLO labels as YOLOv5's collate_fn gives them: (uint8 imgs, targets, paths, shapes)."""
    imgs, targets, paths, shapes = [], [], [], []
    for k, f in enumerate(files):
        with Image.open(f) as im:
            w0, h0 = im.size
            arr = np.asarray(im.convert("RGB").resize((size, size)))
        imgs.append(torch.from_numpy(arr.copy()).permute(2, 0, 1))
        label = root / "labels" / "train" / (Path(f).stem + ".txt")
        rows = np.loadtxt(label, ndmin=2) if label.exists() and label.stat().st_size else np.zeros((0, 5))
        t = torch.zeros(len(rows), 6)
        t[:, 1:] = torch.from_numpy(rows).float()
        t[:, 0] = k
        targets.append(t)
        paths.append(str(f))
        shapes.append(((h0, w0), ((size / h0, size / w0), (0.0, 0.0))))
    return torch.stack(imgs), torch.cat(targets), tuple(paths), tuple(shapes)


@pytest.fixture(scope="module")
def listing(coco128_root):
    return y5.list_images(coco128_root / "images" / "train")


@pytest.fixture(scope="module")
def batches(coco128_root, listing):
    """Four forward batches of 8 real COCO128 images (a background image among them)."""
    return [load_batch(coco128_root, listing[i:i + 8]) for i in range(0, 32, 8)]


class ListLoader:
    """What the hooks read off YOLOv5's InfiniteDataLoader: iteration, len, batch_size and dataset.im_files; with
    ``mosaic`` (``hyp['mosaic']``) also the dataset's ``mosaic`` (``augment and not rect``) and ``hyp``."""

    def __init__(self, batches, im_files, mosaic=None, augment=True):
        self.batches, self.batch_size = batches, y5.YoloV5BatchOps.size(batches[0])
        self.dataset = argparse.Namespace(im_files=list(im_files))
        if mosaic is not None:
            self.dataset.mosaic, self.dataset.hyp = augment, {"mosaic": mosaic}

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def parse(*flags):
    """YOLOv5-like options: a few of its own flags plus ours."""
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rect", action="store_true")
    p.add_argument("--quad", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    y5.add_arguments(p)
    return p.parse_args(list(flags))


# ------------------------------------------------------------------------------------------ listing, batch format
def test_list_images_follows_yolov5_rules(coco128_root, tmp_path, listing):
    assert len(listing) == 128 and listing == sorted(listing) and all(p.endswith(".jpg") for p in listing)
    txt = tmp_path / "list.txt"
    rel = [str(Path(p).relative_to(coco128_root)) for p in listing[:3]]
    # ./ lines are relative to the txt's folder; non-images are dropped
    lines = [f"./{r}" for r in rel] + [str(coco128_root / "data.yaml")]
    txt.write_text("\n".join(lines) + "\n")
    got = y5.list_images(txt)
    assert got == sorted(str(tmp_path / r) for r in rel)
    assert y5.list_images([txt, txt]) == sorted(got * 2)
    with pytest.raises(FileNotFoundError, match="do not exist"):
        y5.list_images(tmp_path / "missing")
    assert y5.sample_ids(listing[:2], coco128_root) == [f"images/train/{Path(p).name}" for p in listing[:2]]
    assert y5.sample_ids(listing[:1], tmp_path) == [listing[0]]  # outside the root: absolute


def test_batch_ops_take_renumbers_and_cat_offsets(batches):
    imgs, targets, paths, shapes = batch = batches[0]
    rows = torch.tensor([5, 0, 3])
    t_imgs, t_targets, t_paths, t_shapes = y5.YoloV5BatchOps.take(batch, rows)
    assert torch.equal(t_imgs, imgs[rows]) and t_paths == tuple(paths[i] for i in (5, 0, 3))
    assert t_shapes == tuple(shapes[i] for i in (5, 0, 3))
    for new, old in enumerate((5, 0, 3)):
        assert torch.equal(t_targets[t_targets[:, 0] == new, 1:], targets[targets[:, 0] == old, 1:])
    assert torch.equal(t_targets[:, 0], t_targets[:, 0].sort().values)  # boxes grouped by image
    joined = y5.YoloV5BatchOps.cat([batches[0], batches[1]])
    assert y5.YoloV5BatchOps.size(joined) == 16 and joined[2] == batches[0][2] + batches[1][2]
    assert torch.equal(joined[1][len(targets):, 0], batches[1][1][:, 0] + 8)
    # the accumulator hands out exactly rho images whose boxes point at them
    acc = BatchAccumulator(5, y5.YoloV5BatchOps)
    for b in batches:
        acc.add(y5.YoloV5BatchOps.take(b, torch.tensor([1, 4, 6])))
    out = [acc.pop() for _ in range(acc.ready())]
    assert [y5.YoloV5BatchOps.size(b) for b in out] == [5, 5] and len(acc) == 2
    assert all(b[1][:, 0].max() < 5 for b in out if len(b[1]))
    small = load_batch(Path(batches[0][2][0]).parents[2], batches[0][2][:2], size=64)
    with pytest.raises(ValueError, match="different image sizes"):
        y5.YoloV5BatchOps.cat([batches[0], small])


# ------------------------------------------------------------------------------------------ per-image loss
@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyDetector()


def test_each_image_scores_as_a_batch_of_one(model, batches):
    imgs, targets, _, _ = batches[0]
    model.eval()  # per-image predictions independent of the batch
    with torch.no_grad():
        preds = model(imgs.float() / 255)
        loss = StandInComputeLoss()
        per = y5.per_image_loss(loss, preds, targets)
        assert per.shape == (8,) and torch.isfinite(per).all()
        for k in (0, 3, 7):
            t = targets[targets[:, 0] == k].clone()
            t[:, 0] = 0
            alone, _ = loss(model(imgs[k:k + 1].float() / 255), t)
            assert torch.allclose(per[k], alone[0], rtol=1e-4, atol=1e-6)
        # batch order does not matter
        order = torch.tensor([7, 2, 0, 5, 1, 6, 3, 4])
        sh = y5.YoloV5BatchOps.take(batches[0], order)
        per_sh = y5.per_image_loss(loss, model(sh[0].float() / 255), sh[1])
        assert torch.allclose(per_sh, per[order], rtol=1e-4, atol=1e-6)
    model.train()


def test_per_image_losses_sum_to_the_batch_loss(model, batches):
    """Summed over a batch of identical images the per-image losses are the batch loss (ComputeLoss's loss is
    scaled by the batch size); the objectness terms add up for any batch, background images included."""
    model.eval()
    imgs, targets, _, _ = batches[0]
    with torch.no_grad():
        k = int(targets[0, 0])
        t = targets[targets[:, 0] == k]
        same = torch.cat([t.clone().index_fill_(1, torch.tensor([0]), float(i)) for i in range(6)])
        preds = model(imgs[k:k + 1].repeat(6, 1, 1, 1).float() / 255)
        loss = StandInComputeLoss()
        assert torch.allclose(y5.per_image_loss(loss, preds, same).sum(), loss(preds, same)[0][0], rtol=1e-4)
        obj_only = StandInComputeLoss(box=0.0, cls=0.0)
        preds = model(imgs.float() / 255)
        targets = targets[targets[:, 0] != 2]  # image 2 as a background image
        assert torch.allclose(y5.per_image_loss(obj_only, preds, targets).sum(), obj_only(preds, targets)[0][0],
                              rtol=1e-4)
    model.train()


def test_autobalance_state_is_restored(model, batches):
    imgs, targets, _, _ = batches[0]
    loss = StandInComputeLoss(autobalance=True)
    before = list(loss.balance)
    with torch.no_grad():
        y5.per_image_loss(loss, model(imgs.float() / 255), targets)
    assert loss.balance == before


def test_score_fn_changes_no_model_state(model, batches):
    model.train()
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [(m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked)) for m in bn]
    score = y5.make_score_fn(nn.DataParallel(model), StandInComputeLoss(), device="cpu")
    losses = score(batches[1])
    assert losses.shape == (8,) and losses.dtype == torch.float32 and not losses.requires_grad
    assert torch.isfinite(losses).all() and model.training and all(m.track_running_stats for m in bn)
    for m, (mean, var, n) in zip(bn, before):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var) and int(m.num_batches_tracked) == n
    # batch statistics are used, as in the training forward: the loss differs from eval mode's
    model.eval()
    eval_losses = y5.make_score_fn(model, StandInComputeLoss())(batches[1])
    model.train()
    assert not torch.allclose(losses, eval_losses)


# ------------------------------------------------------------------------------------------ the hooks object
def test_no_flags_means_identity_hooks(tmp_path, batches, listing):
    reduce = y5.setup(parse(), tmp_path)
    loader = ListLoader(batches, listing)
    assert not reduce.active
    assert reduce.train_path("images/train", 0) == "images/train" and not reduce.subset_changes(3)
    assert reduce.num_batches(loader) == len(loader)
    assert reduce.epoch(loader, 0, 10, None, None) is loader
    assert reduce.state_dict() is None and not (tmp_path / "datareduce").exists()


def test_flags_and_refusals(tmp_path):
    cfg = y5.setup(parse("--ids-alpha", "0.8", "--adonis-eta", "3"), tmp_path).cfg
    assert cfg.ids.alpha == 0.8 and cfg.adonis.eta == 3
    with pytest.raises(UsageError, match="rpc.*use --reduce rpd"):
        y5.setup(parse("--reduce", "rpc"), tmp_path)
    with pytest.raises(UsageError, match="drop --rect"):
        y5.setup(parse("--adonis-eta", "3", "--rect"), tmp_path)
    with pytest.raises(UsageError, match="^IDS .*no --rect"):
        y5.setup(parse("--ids-alpha", "0.8", "--rect"), tmp_path)
    with pytest.raises(UsageError, match="balance"):
        y5.setup(parse("--adonis-balance"), tmp_path)
    assert y5.setup(parse("--reduce", "composer-sb", "--rect"), tmp_path).online  # cuts batches, joins none
    assert y5.setup(parse("--reduce", "random-keep"), tmp_path).online
    # the prune mode runs here without what YOLOv5's loop cannot do (per-image weights, training losses)
    rec = y5.setup(parse("--adonis-mode", "prune", "--epochs", "16"), tmp_path).cfg.adonis
    assert (rec.mode, rec.prune_pool, rec.anneal, rec.rescale, rec.reuse_train_loss) == ("prune", "dense", 2,
                                                                                        False, False)
    # options saved by an unpatched run (no datareduce keys) resume as a plain run
    old = argparse.Namespace(epochs=3, rect=False, seed=0)
    assert not y5.setup(old, tmp_path).active


def test_adonis_yields_full_batches_and_reuses_losses(tmp_path, model, batches, listing):
    opt = parse("--adonis-eta", "3", "--adonis-alpha", "0.5", "--adonis-theta", "0.05", "--adonis-rho", "6",
                "--adonis-omega", "-1")
    reduce = y5.setup(opt, tmp_path, device="cpu")
    loader = ListLoader(batches, listing)
    loss = StandInComputeLoss()
    seen = set(p for b in batches for p in b[2])
    selected = trained = 0
    for epoch in range(3):
        out = list(reduce.epoch(loader, epoch, 3, model, loss))
        st = reduce.selection.stats
        assert len(out) <= reduce.num_batches(loader)
        sizes = [y5.YoloV5BatchOps.size(b) for b in out]
        assert all(s == 6 for s in (sizes[:-1] if epoch == 2 else sizes))
        for b in out:
            assert set(b[2]) <= seen and b[0].dtype == torch.uint8
            assert len(b[1]) == 0 or int(b[1][:, 0].max()) < len(b[2])
        assert st.scored == (32 if epoch == 0 else 0)  # η = 3: losses of epoch 0 are reused in epochs 1 and 2
        assert 0 < st.selected <= 4 * math.ceil(0.5 * 8)
        selected += st.selected
        trained += sum(sizes)
        reduce.end_epoch(epoch, RESULTS)  # after YOLOv5's validation
    assert trained == selected  # the last epoch flushes the remainder
    log = [json.loads(x) for x in (tmp_path / "datareduce" / "log.jsonl").read_text().splitlines()]
    assert [r["type"] for r in log] == ["run", "epoch", "epoch", "epoch", "summary"]
    epochs = log[1:4]
    assert [r["epoch"] for r in epochs] == [0, 1, 2] and epochs[0]["samples_scored"] == 32
    assert epochs[1]["samples_scored"] == 0 and all(r["method"] == "adonis" for r in epochs)
    assert all((r["map50"], r["map50_95"]) == (0.3, 0.2) for r in epochs)
    assert sum(r["samples_backprop"] for r in epochs) == trained == log[-1]["samples_backprop"]
    counts = np.load(tmp_path / "datareduce" / "selection_counts.npy")  # by position in the full listing
    assert counts.shape == (len(listing),) and counts.sum() == trained and not counts[32:].any()


@pytest.mark.parametrize("mosaic, augment, reuse", [(1.0, True, False), (0.5, True, False), (0.0, True, True),
                                                     (1.0, False, True)])
def test_eta_reuse_is_off_while_mosaic_is_on(tmp_path, model, batches, listing, mosaic, augment, reuse):
    """The rule of the Ultralytics trainer: η-reuse is off while mosaic is on (a mosaic is a new composite each
    time). YOLOv5 keeps mosaic on for the whole run while its dataset's ``mosaic`` is set and hyp mosaic > 0, so an
    η = 3 run scores every image every epoch, says so once at setup, and records ``scoring_reuse`` False; hyp
    mosaic 0 (or no augmentation) reuses, as test_adonis_yields_full_batches_and_reuses_losses shows."""
    opt = parse("--adonis-eta", "3", "--adonis-alpha", "0.5", "--adonis-theta", "0.05", "--adonis-rho", "6",
                "--adonis-omega", "-1")
    said = []
    reduce = y5.setup(opt, tmp_path, device="cpu", log=said.append)
    loader, loss = ListLoader(batches, listing, mosaic=mosaic, augment=augment), StandInComputeLoss()
    scored, trained = [], 0
    for epoch in range(3):
        trained += sum(y5.YoloV5BatchOps.size(b) for b in reduce.epoch(loader, epoch, 3, model, loss))
        scored.append(reduce.selection.stats.scored)
        reduce.end_epoch(epoch, RESULTS)
    assert scored == ([32, 0, 0] if reuse else [32, 32, 32])
    epochs = [r for r in map(json.loads, (tmp_path / "datareduce" / "log.jsonl").read_text().splitlines())
              if r["type"] == "epoch"]
    assert [r["scoring_reuse"] for r in epochs] == [reuse] * 3
    assert [r["samples_scored"] for r in epochs] == scored
    assert sum(r["samples_backprop"] for r in epochs) == trained
    line = [x for x in said if "mosaic" in x]
    if reuse:
        assert line == []
    else:
        assert line == [f"datareduce: mosaic is on for the whole run (hyp mosaic {mosaic:g}): every image is scored "
                        "each epoch, so --adonis-eta 3 reuses no loss (η-reuse needs mosaic off)"]


def test_no_mosaic_line_without_eta_reuse(tmp_path, model, batches, listing):
    """η = 1 re-scores every image anyway: mosaic changes nothing and nothing is said."""
    said = []
    reduce = y5.setup(parse("--adonis-rho", "6", "--adonis-omega", "-1"), tmp_path, device="cpu", log=said.append)
    list(reduce.epoch(ListLoader(batches, listing, mosaic=1.0), 0, 2, model, StandInComputeLoss()))
    assert not [x for x in said if "mosaic" in x] and reduce.selection.stats.scored == 32


def test_early_stopping_writes_the_summary_at_the_epoch_it_stops(tmp_path, model, batches, listing):
    """YOLOv5's --patience ends a run before its last epoch: the summary follows that epoch's record."""
    reduce = y5.setup(parse("--adonis-eta", "2", "--adonis-rho", "6"), tmp_path, device="cpu")
    loader, loss = ListLoader(batches, listing), StandInComputeLoss()
    trained = 0
    for epoch in range(2):  # of 5
        trained += sum(y5.YoloV5BatchOps.size(b) for b in reduce.epoch(loader, epoch, 5, model, loss))
        reduce.end_epoch(epoch, RESULTS, stop=epoch == 1)
    log = [json.loads(x) for x in (tmp_path / "datareduce" / "log.jsonl").read_text().splitlines()]
    assert [r["type"] for r in log] == ["run", "epoch", "epoch", "summary"]
    assert log[-1]["samples_backprop"] == trained and log[-1]["final_map50_95"] == 0.2


def one_box(targets) -> bool:
    """Whether an image's targets (YOLOv5's rows) hold exactly one box."""
    return len(targets) == 1


class NaNOnOneBox(StandInComputeLoss):
    """The stand-in loss, non-finite for an image with a single box (a loss that overflowed on it)."""

    def __call__(self, p, targets):
        loss, items = super().__call__(p, targets)
        return (loss * float("nan"), items) if one_box(targets) else (loss, items)


def test_adonis_counts_the_nonfinite_losses_it_drops(tmp_path, model, batches, listing):
    """A non-finite per-image loss reaches ADONIS through the hooks' scoring forward; the selector drops it and
    the epoch record counts it (``nonfinite_losses``, as on the classification hosts)."""
    bad = {b[2][k] for b in batches for k in range(8) if one_box(b[1][b[1][:, 0] == k])}
    assert 0 < len(bad) < 16
    reduce = y5.setup(parse("--adonis-eta", "1", "--adonis-alpha", "0.5", "--adonis-omega", "-1"), tmp_path)
    loader, loss = ListLoader(batches, listing), NaNOnOneBox()
    for epoch in range(2):  # η = 1: every image is scored again each epoch, its NaN with it
        with pytest.warns(RuntimeWarning, match="non-finite") if epoch == 0 else contextlib.nullcontext():
            out = list(reduce.epoch(loader, epoch, 2, model, loss))
        assert not {p for b in out for p in b[2]} & bad  # never selected
        reduce.end_epoch(epoch, RESULTS)
    epochs = [json.loads(x) for x in (tmp_path / "datareduce" / "log.jsonl").read_text().splitlines()][1:3]
    assert [r["nonfinite_losses"] for r in epochs] == [len(bad), len(bad)]
    assert reduce.selection.selector.nonfinite == 2 * len(bad)


def test_selector_state_survives_a_checkpoint(tmp_path, model, batches, listing):
    opt = parse("--adonis-eta", "2", "--adonis-alpha", "0.5", "--adonis-theta", "0.05", "--adonis-omega", "-1")
    loader, loss = ListLoader(batches, listing), StandInComputeLoss()
    first = y5.setup(opt, tmp_path / "a")
    list(first.epoch(loader, 0, 5, model, loss))
    path = tmp_path / "last.pt"
    torch.save({"datareduce": first.state_dict(), "epoch": 0}, path)
    ckpt = torch.load(path, weights_only=False)
    assert len(ckpt["datareduce"]["selection"]) == 1  # one selection state per rank
    second = y5.setup(opt, tmp_path / "b")
    second.load_state_dict(ckpt["datareduce"], ckpt["epoch"])
    assert second.resume_epoch == 1 and second.state_dict() is ckpt["datareduce"]
    a = list(first.epoch(loader, 1, 5, model, loss))
    b = list(second.epoch(loader, 1, 5, model, loss))
    assert [x[2] for x in a] == [x[2] for x in b]  # the same images, in the same batches
    assert second.selection.stats.scored == 0  # the restored cache still holds epoch 0's losses
    two_ranks = {**ckpt["datareduce"], "selection": ckpt["datareduce"]["selection"] * 2}
    third = y5.setup(opt, tmp_path / "c")
    third.load_state_dict(two_ranks, ckpt["epoch"])
    with pytest.warns(RuntimeWarning, match="2 rank"):  # another world size: rank 0's state, and a warning
        assert [x[2] for x in third.epoch(loader, 1, 5, model, loss)] == [x[2] for x in b]


def test_resume_honours_a_changed_eta_and_refuses_a_changed_alpha(tmp_path, model, batches, listing):
    """YOLOv5's --resume replaces opt with the run's opt.yaml and drops the command line: the hooks put the
    data-reduction flags given again over it and check them against the run's (datareduce.flags.check_resume, as
    on every host). A changed --adonis-alpha is refused in one line at setup, before any work; a changed
    --adonis-eta is honoured: logged, in the resume record, in opt.yaml, and the resumed selector re-scores by it
    over the restored cache."""
    import yaml

    started = ("--adonis-eta", "2", "--adonis-alpha", "0.5", "--adonis-theta", "0.05", "--adonis-omega", "-1")
    loader, loss = ListLoader(batches, listing), StandInComputeLoss()
    first = y5.setup(parse(*started), tmp_path)
    list(first.epoch(loader, 0, 2, model, loss))
    first.end_epoch(0, RESULTS)
    (tmp_path / "opt.yaml").write_text(yaml.safe_dump(vars(parse(*started))))  # what YOLOv5 saved at the start
    ckpt = {"datareduce": first.state_dict(), "epoch": 0}
    last = str(tmp_path / "weights" / "last.pt")

    def resumed_opt():  # YOLOv5's opt on --resume: the run's opt.yaml
        opt = argparse.Namespace(**yaml.safe_load((tmp_path / "opt.yaml").read_text()))
        opt.weights, opt.resume = last, True
        return opt

    with pytest.raises(UsageError) as refused:
        y5.setup(resumed_opt(), tmp_path, argv=["--resume", last, "--adonis-alpha", "0.3", "--img", "96"])
    assert str(refused.value) == (f"--resume {last}: the run was started with other settings (--adonis-alpha 0.5 "
                                  "→ 0.3); a resumed run continues with its own: drop these flags, or start a new "
                                  "run (another --name) to change them")
    said = []
    resumed = y5.setup(resumed_opt(), tmp_path, log=said.append, argv=["--resume", last, "--adonis-eta", "1"])
    assert said == ["datareduce: resumed with --adonis-eta 2 → 1"]
    assert yaml.safe_load((tmp_path / "opt.yaml").read_text())["adonis_eta"] == 1  # what a later --resume reads
    resumed.load_state_dict(ckpt["datareduce"], ckpt["epoch"])
    list(resumed.epoch(loader, 1, 2, model, loss))
    resumed.end_epoch(1, RESULTS)
    assert resumed.selection.selector.eta == resumed.selection.selector.cache.eta == 1
    assert resumed.selection.stats.scored == 32  # η = 2 would reuse epoch 0's losses
    log = [json.loads(x) for x in (tmp_path / "datareduce" / "log.jsonl").read_text().splitlines()]
    assert [r for r in log if r["type"] == "resume"] == [{"type": "resume", "epoch": 1,
                                                          "changed": {"--adonis-eta": [2, 1]}}]
    assert [r["type"] for r in log] == ["run", "epoch", "resume", "epoch", "summary"]
    # nothing given again: the run's own settings (now η = 1, from opt.yaml), nothing changed
    assert y5.setup(resumed_opt(), tmp_path, argv=["--resume", last]).cfg.adonis.eta == 1


def test_resume_reads_abbreviated_flags_as_yolov5_parsed_them():
    """YOLOv5's parser (ours added) accepts a unique prefix; on --resume the hooks re-read the command line, and
    an abbreviated flag must mean there what it meant to YOLOv5, not vanish."""
    argv = ["--resume", "last.pt", "--adonis-et", "1", "--img", "96", "--ids-al=0.5", "--reduce", "rs2"]
    assert y5.given_reduce_flags(argv) == {"adonis_eta": 1, "ids_alpha": 0.5, "reduce": "rs2"}
    assert y5.given_reduce_flags(["--resume", "last.pt", "--epochs", "3"]) == {}


def test_composer_sb_cuts_active_batches_and_keeps_its_state(tmp_path, model, batches, listing):
    opt = parse("--reduce", "composer-sb", "--composer-keep", "0.5", "--composer-start", "0.5",
                "--composer-end", "1", "--composer-interrupt", "0")
    loader, loss = ListLoader(batches, listing), StandInComputeLoss()
    reduce = y5.setup(opt, tmp_path / "a")
    assert reduce.num_batches(loader) == len(loader)
    for epoch in range(2):  # inactive in the first half of training, active in the second
        out = list(reduce.epoch(loader, epoch, 2, model, loss))
        sizes = [y5.YoloV5BatchOps.size(b) for b in out]
        assert sizes == ([8] * 4 if epoch == 0 else [4] * 4)
        assert reduce.selection.stats.scored == (0 if epoch == 0 else 32)
        reduce.end_epoch(epoch, RESULTS)
    log = [json.loads(x) for x in (tmp_path / "a" / "datareduce" / "log.jsonl").read_text().splitlines()]
    assert [(r["samples_selected"], r["samples_backprop"]) for r in log if r["type"] == "epoch"] == [(32, 32),
                                                                                                   (16, 16)]
    second = y5.setup(opt, tmp_path / "b")
    second.load_state_dict(reduce.state_dict(), 0)
    kept = [b[2] for b in reduce.epoch(loader, 1, 2, model, loss)]
    assert [b[2] for b in second.epoch(loader, 1, 2, model, loss)] == kept  # the selector's draws restored


def test_rs2_rebuilds_the_loader_from_each_epochs_random_subset(coco128_root, tmp_path, listing, batches):
    opt = parse("--reduce", "rs2", "--rs2-fraction", "0.25")
    reduce = y5.setup(opt, tmp_path)
    train = coco128_root / "images" / "train"
    seen = []
    for epoch in range(3):
        assert reduce.subset_changes(epoch) == (epoch > 0)
        kept = Path(reduce.train_path(train, epoch)).read_text().splitlines()
        assert len(kept) == math.ceil(0.25 * len(listing)) and set(kept) <= set(listing)
        seen.append(set(kept))
        list(reduce.epoch(ListLoader(batches[:1], kept[:8]), epoch, 3))
        reduce.end_epoch(epoch, RESULTS)
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2])  # without replacement across epochs
    records = [r for r in map(json.loads, (tmp_path / "datareduce" / "log.jsonl").read_text().splitlines())
               if r["type"] == "epoch"]
    assert all(r["method"] == "rs2" and r["keep_fraction"] == 0.25 and r["train_samples"] == len(kept)
               for r in records)


@pytest.fixture(scope="module")
def ids_flags(tmp_path_factory):
    cache = tmp_path_factory.mktemp("emb")
    return ["--ids-extractor", "resnet18", "--ids-weights", "random", "--ids-image-size", "32",
            "--ids-cache-dir", str(cache)]


def test_ids_writes_the_kept_list_and_switches_at_gamma(coco128_root, tmp_path, ids_flags, listing):
    train = coco128_root / "images" / "train"
    reduce = y5.setup(parse("--ids-alpha", "0.8", "--ids-gamma", "2", *ids_flags), tmp_path, device="cpu",
                      root=coco128_root)
    easy = Path(reduce.train_path(str(train), 0))
    kept = easy.read_text().splitlines()
    assert len(kept) == math.ceil(0.8 * 128) and set(kept) <= set(listing) and kept == sorted(kept)
    assert y5.list_images(easy) == kept  # YOLOv5 reads the list back as the same paths
    assert not reduce.subset_changes(0) and not reduce.subset_changes(1) and reduce.subset_changes(2)
    hard = Path(reduce.train_path(str(train), 2))
    assert hard != easy and not reduce.subset_changes(3)
    hard_kept = hard.read_text().splitlines()
    assert len(hard_kept) in (103, 104) and set(hard_kept) != set(kept)
    m = manifest.read(tmp_path / "datareduce" / "manifest.json")
    assert [s["mode"] for s in m["subsets"]] == ["easy", "hard"] and m["extractor"]["extractor"] == "resnet18"
    assert m["subsets"][0]["kept"][0].startswith("images/train/")
    loader = type("Sized", (), {"batch_size": 16, "__len__": lambda self: 7})()
    assert reduce.num_batches(loader) == 8  # one more image may come with the hard subset
    # a manifest from an earlier run is reused as is; one from other data is refused
    again = y5.setup(parse("--ids-manifest", str(tmp_path / "datareduce" / "manifest.json")), tmp_path / "again",
                     root=coco128_root)
    assert Path(again.train_path(str(train), 0)).read_text().splitlines() == kept
    other = tmp_path / "other.txt"
    other.write_text("\n".join(listing[:100]) + "\n")
    with pytest.raises(manifest.ManifestMismatch):
        y5.setup(parse("--ids-manifest", str(tmp_path / "datareduce" / "manifest.json")), tmp_path / "x",
                 root=coco128_root).train_path(str(other), 0)


def test_ids_and_adonis_together_key_the_cache_by_full_listing(coco128_root, tmp_path, ids_flags, model, listing):
    opt = parse("--ids-alpha", "0.5", "--adonis-eta", "3", *ids_flags)
    opt.data = str(coco128_root / "data.yaml")  # YOLOv5's --data
    reduce = y5.setup(opt, tmp_path, device="cpu", root=coco128_root)
    kept = Path(reduce.train_path(str(coco128_root / "images" / "train"), 0)).read_text().splitlines()
    assert len(kept) == 64
    loader = ListLoader([load_batch(coco128_root, kept[i:i + 8]) for i in range(0, 16, 8)], kept)
    out = list(reduce.epoch(loader, 0, 1, model, StandInComputeLoss()))
    assert sum(y5.YoloV5BatchOps.size(b) for b in out) == reduce.selection.stats.selected
    ids = reduce.selection.kept_indices()
    assert all(listing[i] in kept for i in ids.tolist())  # indices are positions in the full listing
    reduce.end_epoch(0, RESULTS)
    log = [json.loads(x) for x in (tmp_path / "datareduce" / "log.jsonl").read_text().splitlines()]
    assert [r["type"] for r in log] == ["run", "ids", "epoch", "summary"]
    assert log[2]["subset"] == "easy" and log[2]["train_samples"] == 64
    counts = np.load(tmp_path / "datareduce" / "selection_counts.npy")
    assert counts.sum() == sum(y5.YoloV5BatchOps.size(b) for b in out)
    assert {listing[i] for i in np.flatnonzero(counts)} <= set(kept)
    # `datareduce report` reads YOLOv5's save_dir: the run files in its datareduce/, the images from --data
    run = load_run(tmp_path)
    assert (run.method, run.metric, run.trajectory()) == ("ids+adonis", "map50_95", [(log[2]["train_time_s"], 20.0)])
    assert run.images is not None and len(run.images) == 128 and run.counts.tolist() == counts.tolist()
