"""Hooks that ``patches/yolov5-train.patch`` calls from ultralytics/yolov5's own ``train.py``.

The patch adds the ``--ids-*`` / ``--adonis-*`` flags and a handful of calls; everything they do lives here, and
nothing here imports YOLOv5 (it is not an installable package): YOLOv5's objects — its ``ComputeLoss``, model and
train loader — are passed in by the patched script. Batches are YOLOv5's ``(imgs, targets, paths, shapes)``:
``imgs`` uint8 (B, 3, H, W) as the loader gives them, ``targets`` (N, 6) rows ``[image, class, x, y, w, h]``.

* **IDS** (one dataset-wide prototype, as the paper does for COCO): the training images are listed the way YOLOv5's ``LoadImagesAndLabels`` lists them, embedded
  whole, ranked by distance to one dataset-wide centroid, and the kept images are written as a txt list that the
  patched script passes to YOLOv5's ``create_dataloader`` in place of the train path. With ``--ids-gamma`` a second
  list (the hard subset) replaces it from epoch γ on; the patched script rebuilds its loader then. RPD and SSP
  subsets work the same way. **RS2** writes each epoch's random subset as the list ``train-rs2.txt`` and the
  patched script rebuilds its loader from it at every epoch. The lists go to ``<save_dir>/datareduce/``.
* **ADONIS** (also SB, Stale-SB and the random-keep control): :meth:`DataReduce.epoch` wraps the batch loop.
  Each forward batch is scored with one loss per image from YOLOv5's own ``ComputeLoss`` (:func:`per_image_loss`),
  the selected images are queued, and the loop receives batches of exactly ``rho`` images in YOLOv5's format. The
  loss cache (η-reuse) is keyed by the image's position in the full training listing. As on every detection
  host, η-reuse is off while mosaic is on (:class:`~datareduce.online.ReuseGate`: a mosaic is a new composite each
  time it is loaded); YOLOv5 decides mosaic in its ``LoadImagesAndLabels`` — ``dataset.mosaic`` (augment, no rect)
  and each image with probability ``hyp['mosaic']`` — and keeps it on for the whole run, so with the default hyps
  every image is scored every epoch and ``--adonis-eta`` > 1 only takes effect with ``mosaic: 0.0`` (one line at
  setup says so; each epoch record's ``scoring_reuse`` says whether reuse was on). **Composer-SB** scores each
  forward batch while it is active and cuts it to its kept images (:class:`~datareduce.online.ComposerSelection`).
* Refused at start-up (:func:`check_supported`): what needs one class per image (RPC, ``--adonis-balance``) or a
  per-image loss weight or the training step's per-image losses (InfoBatch, ``--adonis-rescale``,
  ``--adonis-reuse-train-loss``), which YOLOv5's ``ComputeLoss`` and loop do not give.
* :meth:`DataReduce.end_epoch` (after validation, with YOLOv5's ``results``): the epoch's record with its mAP.

The run files (:mod:`datareduce.run_files`: ``log.jsonl``, ``manifest.json``, ``selection_counts.npy``, the last
counted by each image's position in the full training listing) go to ``<save_dir>/datareduce/``, apart from
YOLOv5's ``weights/`` and ``results.csv``; one line per epoch goes to YOLOv5's logger.

With no data-reduction flag, every hook is the identity: the train path, the loader and the batch count are
returned unchanged.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from .. import distributed, host_support, manifest, offline
from ..host_support import Host
from .._validate import UsageError
from ..atomic import write_text
from ..config import ReduceConfig
from ..flags import DROP_FLAGS, add_reduce_arguments, changed_record, check_resume, config_from_args, resumed_line
from ..online import ComposerSelection, OnlineSelection, ReuseGate, mosaic_reuse_line
from ..rs2 import RS2Subsets
from ..run_files import SUBFOLDER, epoch_line
from ..session import ReductionSession

__all__ = ["IMG_FORMATS", "HOST", "check_supported", "add_arguments", "setup", "DataReduce", "list_images",
           "YoloV5BatchOps", "per_image_loss", "batch_statistics_only", "make_score_fn"]

IMG_FORMATS = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm")  # YOLOv5's image suffixes
# What YOLOv5's train.py runs with these hooks: a detection image has no single class, and its ComputeLoss takes no
# per-image weights and hands back no per-image losses.
HOST = Host("YOLOv5's train.py", one_class_per_sample=False, loss_weights=False, train_losses=False,
            methods=("full", "sb", "stale-sb", "random-keep", "composer-sb", "rs2", "rpd", "ssp"),
            why_not={
                "rpc": "it draws a class-balanced subset, and a detection image has no single class: use --reduce rpd "
                       "(a random subset of the images)",
                "infobatch": "it weights each kept image's loss and scores images by their training loss, which "
                             "YOLOv5's ComputeLoss and loop do not give: use trainers/yolo_train.py, or --reduce rs2 "
                             "here",
            })
# selections that queue images into batches of rho (Composer-SB cuts each batch instead)
ACCUMULATING = ("sb", "stale-sb", "random-keep")


def check_supported(cfg: ReduceConfig, rect: bool = False, quad: bool = False) -> None:
    """Refuse, before any work, what the patched ``train.py`` cannot run, in one line naming the flag, why and
    what to use instead (:class:`~datareduce._validate.UsageError`): :data:`HOST`'s limits, then rect/quad."""
    host_support.check_supported(cfg, HOST)
    if (cfg.ids is not None or cfg.method in ("rpd", "ssp", "rs2")) and rect:
        name = "IDS" if cfg.ids is not None else f"--reduce {cfg.method}"
        raise UsageError(f"{name} trains a subset list, which needs rectangular training off: drop --rect (no --rect)")
    if (cfg.adonis is not None or cfg.method in ACCUMULATING) and (rect or quad):
        raise UsageError("ADONIS / SB / random-keep join images into batches of rho, which needs equal-size batches: "
                         "drop --rect and --quad")


def add_arguments(parser):
    """Add the ``--ids-*``, ``--adonis-*`` and ``--reduce`` flags (the same as our trainers') to YOLOv5's parser."""
    return add_reduce_arguments(parser)


# ============================================================================================== the listing
def list_images(path) -> List[str]:
    """The training images of a YOLOv5 ``train:`` entry, as YOLOv5's ``LoadImagesAndLabels`` lists them.

    ``path``: a folder (searched recursively), a txt file of image paths (``./x`` relative to the txt's folder)
    or a list of those; only files with an image suffix count; the result is sorted. These strings are the
    ``paths`` YOLOv5's loader yields, so they key the ADONIS loss cache.
    """
    found: List[str] = []
    for p in path if isinstance(path, (list, tuple)) else [path]:
        p = Path(p)
        if p.is_dir():
            found += glob.glob(str(p / "**" / "*.*"), recursive=True)
        elif p.is_file():
            parent = str(p.parent) + os.sep
            lines = p.read_text(errors="ignore").strip().splitlines()
            found += [x.replace("./", parent, 1) if x.startswith("./") else x for x in lines]
        else:
            raise FileNotFoundError(f"training images {p} do not exist")
    images = sorted(x.replace("/", os.sep) for x in found if x.split(".")[-1].lower() in IMG_FORMATS)
    if not images:
        raise FileNotFoundError(f"no images found in {path}")
    return images


def sample_ids(images: Sequence[str], root=None) -> List[str]:
    """Manifest ids of ``images``: paths relative to the dataset ``root`` when all lie under it, else absolute."""
    if root:
        base = os.path.abspath(str(root))
        rel = [os.path.relpath(os.path.abspath(p), base) for p in images]
        if not any(r.startswith("..") for r in rel):
            return [r.replace(os.sep, "/") for r in rel]
    return [os.path.abspath(p) for p in images]


# ============================================================================================== batch format
class YoloV5BatchOps:
    """``size``/``take``/``cat`` for YOLOv5 batches ``(imgs, targets, paths, shapes)`` (the accumulator protocol).

    ``targets`` column 0 names each box's image: taking images renumbers their boxes (kept grouped by image, in
    the new image order), concatenating offsets them. ``paths`` and ``shapes`` follow their images.
    """

    @staticmethod
    def size(batch) -> int:
        return int(batch[0].shape[0])

    @staticmethod
    def take(batch, rows: torch.Tensor):
        imgs, targets, paths, shapes = batch
        rows = torch.as_tensor(rows).long().cpu()
        position = torch.full((imgs.shape[0],), -1, dtype=torch.long)
        position[rows] = torch.arange(len(rows))
        owner = position[targets[:, 0].long().cpu()]
        boxes = (owner >= 0).nonzero().flatten()
        boxes = boxes[torch.argsort(owner[boxes], stable=True)]
        new_targets = targets[boxes.to(targets.device)].clone()
        new_targets[:, 0] = owner[boxes].to(targets.device, targets.dtype)
        pick = rows.tolist()
        return (imgs[rows.to(imgs.device)], new_targets, tuple(paths[i] for i in pick), tuple(shapes[i] for i in pick))

    @staticmethod
    def cat(batches):
        sizes = {tuple(b[0].shape[1:]) for b in batches}
        if len(sizes) > 1:
            raise ValueError(f"cannot join YOLOv5 batches of different image sizes {sorted(sizes)}: ADONIS needs "
                             "equal-size batches (no --rect)")
        offset, targets = 0, []
        for b in batches:
            t = b[1].clone()
            t[:, 0] += offset
            targets.append(t)
            offset += YoloV5BatchOps.size(b)
        return (torch.cat([b[0] for b in batches]), torch.cat(targets),
                tuple(p for b in batches for p in b[2]), tuple(s for b in batches for s in b[3]))


# ============================================================================================== per-image loss
def per_image_loss(compute_loss: Callable, preds, targets: torch.Tensor) -> torch.Tensor:
    """One detection loss per image, from YOLOv5's own ``ComputeLoss``: a ``(B,)`` tensor.

    ``compute_loss(p, targets) -> (loss * batch_size, items)`` is called once per image on that image's slice of
    every prediction layer, with its boxes renumbered to image 0, so each image gets exactly the loss YOLOv5
    would give it as a batch of one (box and class terms averaged over its own matched targets, objectness over
    its own grid). Summed over a batch of identical images this is the batch loss; the objectness terms of any
    batch add up to it. An autobalancing ``ComputeLoss`` is restored after the calls.
    """
    preds = list(preds)
    batch_size = preds[0].shape[0]
    owner = targets[:, 0].long()
    order = torch.argsort(owner, stable=True)
    counts = torch.bincount(owner, minlength=batch_size).tolist()  # one host sync per batch
    parts = targets[order].split(counts)
    saved = list(compute_loss.balance) if getattr(compute_loss, "autobalance", False) else None
    losses = []
    try:
        for k in range(batch_size):
            t = parts[k].clone()
            t[:, 0] = 0
            loss, _ = compute_loss([p[k:k + 1] for p in preds], t)
            losses.append(loss.reshape(-1)[0])
    finally:
        if saved is not None:
            compute_loss.balance = saved
    return torch.stack(losses)


@contextlib.contextmanager
def batch_statistics_only(model: nn.Module):
    """Inside, BatchNorm layers in train mode normalise with the batch's own statistics but leave their running
    statistics and counters untouched; every module keeps its mode (YOLOv5's ``Detect`` returns its raw layer
    outputs in train mode, which is what ``ComputeLoss`` takes). So a scoring forward measures what the training
    forward will, and changes nothing."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield model
    finally:
        for m in norms:
            m.track_running_stats = True


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DataParallel / DistributedDataParallel (scoring must not enter collectives)."""
    return model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model


def make_score_fn(model: nn.Module, compute_loss: Callable, device=None, amp: bool = False):
    """``score(batch) -> (B,)`` per-image losses of a raw YOLOv5 batch under ``no_grad``, changing no model state.

    The images are moved to ``device`` and scaled to 0-1 as YOLOv5's loop does; the model is called in its
    current (train) mode with :func:`batch_statistics_only`.
    """
    net = unwrap(model)

    def score(batch) -> torch.Tensor:
        dev = torch.device(device) if device is not None else next(net.parameters()).device
        imgs = batch[0].to(dev, non_blocking=True).float() / 255
        use_amp = bool(amp) and dev.type == "cuda"
        with torch.no_grad(), batch_statistics_only(net), torch.autocast(dev.type, enabled=use_amp):
            preds = net(imgs)
            if isinstance(preds, tuple):  # eval-mode Detect returns (inference, raw layers)
                preds = preds[1]
            return per_image_loss(compute_loss, preds, batch[1].to(dev)).float()

    return score


def mosaic_probability(dataset) -> float:
    """The share of the images YOLOv5's ``LoadImagesAndLabels`` loads as mosaics: ``hyp['mosaic']`` when the
    dataset's ``mosaic`` is set (``augment and not rect``), else 0; a dataset without these attributes (not
    YOLOv5's) has none."""
    if not getattr(dataset, "mosaic", False):
        return 0.0
    return float((getattr(dataset, "hyp", None) or {}).get("mosaic", 0.0) or 0.0)


class PathIndex:
    """Stable integer ids of image paths: their position in the full training listing (new paths get new ids)."""

    def __init__(self, paths: Sequence[str] = ()):
        self.ids: Dict[str, int] = {}
        for p in paths:
            self.ids.setdefault(p, len(self.ids))

    def __call__(self, batch) -> torch.Tensor:
        return torch.tensor([self.ids.setdefault(p, len(self.ids)) for p in batch[2]], dtype=torch.long)


# ============================================================================================== the hooks object
class ImageListing:
    """The training images as the reduction session sees them: the full listing's size, the offline subset in
    place (its txt list, written up front, is the one the patched script rebuilds its loader from) and the size
    of the images an epoch trains on. It plans no visiting order."""

    sampler = None
    labels = None  # a detection image has no single class

    def __init__(self, owner: "DataReduce", num_samples: int):
        self.owner, self.num_samples = owner, num_samples
        self.positions = None  # full-listing positions of the offline subset in place (None: all)

    def use_subset(self, positions) -> None:
        self.positions = positions

    def num_train(self) -> int:
        if self.owner.rs2 is not None:
            return self.owner.rs2.per_epoch
        return self.num_samples if self.positions is None else len(self.positions)


class DataReduce:
    """What the patched ``train.py`` holds: the run's data-reduction settings and state.

    ``train_path(path, epoch)`` → the path to build the train loader from (a txt list of the IDS subset);
    ``subset_changes(epoch)`` → True when the loader must be rebuilt (IDS γ switch); ``num_batches(loader)`` → an
    upper bound of the batches an epoch yields; ``epoch(loader, ...)`` → the batches to train on;
    ``end_epoch(epoch, results)`` → the epoch's record; ``state_dict()`` / ``load_state_dict()`` for YOLOv5's
    checkpoint. ``args``: YOLOv5's options (the ``run`` record); with ``noval`` only the last epoch has an mAP.
    """

    def __init__(self, cfg: ReduceConfig, save_dir, device=None, log: Callable = print, root=None,
                 rect: bool = False, quad: bool = False, rank: Optional[int] = None, args: Optional[dict] = None):
        check_supported(cfg, rect, quad)
        self.cfg = cfg
        self.args = dict(args or {})
        self.save_dir = Path(save_dir)
        self.out = self.save_dir / SUBFOLDER
        self.device = device
        self.rank = distributed.rank() if rank is None else rank
        self.say = log if self.rank == 0 else (lambda *a, **k: None)
        self.root = root
        self.offline = cfg.ids is not None or cfg.method in ("rpd", "ssp")
        self.online = cfg.adonis is not None or cfg.method in ACCUMULATING + ("composer-sb",)
        self.rs2: Optional[RS2Subsets] = None  # RS2: the per-epoch random subsets of the full listing
        self.listing: Optional[List[str]] = None
        self.lists: List[Path] = []  # the txt list of each offline subset, in the manifest's order
        self.rs2_epoch: Optional[int] = None  # RS2: the epoch whose subset list was written last
        self.selection: Optional[OnlineSelection] = None
        self.index: Optional[PathIndex] = None
        self.pending_state: Optional[dict] = None  # a checkpoint's state, until the session exists
        self.session: Optional[ReductionSession] = None  # made with the full listing (the counts' size)
        self.resume_epoch: Optional[int] = None
        self.honoured: dict = {}  # the data-reduction flags a resumed run changed (setup's resume_flags)
        self.epochs: Optional[int] = None

    @property
    def active(self) -> bool:
        return self.offline or self.online or self.cfg.method == "rs2"

    # ---------------------------------------------------------------------------------------- IDS, RS2
    def train_path(self, train_path, epoch: int = 0):
        """The train path for ``epoch``: ``train_path`` itself, or the txt list of the offline subset (RS2: of
        the epoch's random subset)."""
        if self.cfg.method == "rs2":
            return self._rs2_list(train_path, epoch)
        if not self.offline:
            return train_path
        if self.session is None:
            self._select(train_path)
        self.session.use_subset(epoch)
        return str(self.lists[self.session.subset])

    def subset_changes(self, epoch: int) -> bool:
        """True at the start of an epoch whose subset differs from the loader's (rebuild it from ``train_path``)."""
        if self.cfg.method == "rs2":
            return self.rs2_epoch is not None and epoch != self.rs2_epoch
        session = self.session
        return (self.offline and session is not None and session.subset is not None
                and session.schedule.index_at(epoch) != session.subset)

    def _rs2_list(self, train_path, epoch: int) -> str:
        """Write ``epoch``'s RS2 subset as a txt list (every rank writes the same: the subset is a function of
        the seed and the epoch) and return its path."""
        if self.rs2 is None:
            self._open(list_images(train_path))
            self.rs2 = RS2Subsets(len(self.listing), self.cfg.rs2.fraction, seed=self.cfg.seed)
        path = self.out / "train-rs2.txt"
        write_text(path, "".join(self.listing[i] + "\n" for i in sorted(self.rs2.plan(epoch).tolist())))
        self.rs2_epoch = epoch
        return str(path)

    def _open(self, listing: List[str], chosen: Optional[dict] = None, keys: Optional[List[str]] = None) -> None:
        """The reduction session of the full training ``listing`` with the offline subset ``chosen`` (made of
        ``keys``): its run files continue a resumed run's log and counts (after ``load_state_dict``); and the
        image index the counts and the loss cache are keyed by."""
        self.listing = listing
        self.index = PathIndex(listing)
        self.session = ReductionSession(self.cfg, self.out, ImageListing(self, len(listing)), main=self.rank == 0,
                                        manifest=chosen, keys=keys, books_steps=False)
        self.session.load_state_dict(self.pending_state, rank=self.rank)
        self.session.files.open(self.args, resume_epoch=self.resume_epoch, dataset="yolov5", device=str(self.device))
        if self.honoured:  # what the resumed epochs run with, next to the run record's settings
            self.session.files.write("resume", {"epoch": self.resume_epoch, "changed": changed_record(self.honoured)})

    def _select(self, train_path) -> None:
        cfg = self.cfg
        start = time.perf_counter()
        listing = list_images(train_path)
        keys = sample_ids(listing, self.root)
        info = {}
        if cfg.ids is not None and cfg.ids.manifest:
            chosen = manifest.read(cfg.ids.manifest)
            manifest.verify(chosen, keys)
        else:
            chosen = self._make_manifest(listing, keys, info)
        self._open(listing, chosen, keys)
        self.out.mkdir(parents=True, exist_ok=True)
        position = {k: i for i, k in enumerate(keys)}
        self.lists = []
        for s in chosen["subsets"]:
            kept = sorted(position[k] for k in s["kept"])
            path = self.out / f"train-{s['from_epoch']}-{s.get('mode') or chosen['method']}.txt"
            write_text(path, "".join(self.listing[i] + "\n" for i in kept))  # every rank's loader reads it
            self.lists.append(path)
        seconds = time.perf_counter() - start
        self.session.files.offline_subset(chosen, seconds, source=cfg.ids.manifest if cfg.ids is not None else None,
                                          **info)
        self.say(f"datareduce: {chosen['method']} keeps {[s['num_kept'] for s in chosen['subsets']]} of {len(keys)} "
                 f"training images (from epochs {[s['from_epoch'] for s in chosen['subsets']]}) in {seconds:.1f}s "
                 f"-> {self.out}")

    def _make_manifest(self, listing: List[str], keys: List[str], info: dict) -> dict:
        cfg, emb, record = self.cfg, None, None
        if offline.needs_embeddings(cfg):
            from ..embed import build_extractor

            ex = build_extractor(cfg.embed.extractor, weights=cfg.embed.weights, device=self.device,
                                 image_size=cfg.embed.image_size)
            emb, info["embed_time_s"] = offline.embed_samples(listing, keys, self.root, ex, cfg.embed)
            record = offline.extractor_record(cfg.embed, ex)
        return offline.build_manifest(cfg, keys, emb, extractor=record)

    # ---------------------------------------------------------------------------------------- ADONIS
    def rho(self, loader) -> int:
        given = self.cfg.adonis.rho if self.cfg.adonis is not None else None
        return int(given or loader.batch_size)

    def num_batches(self, loader) -> int:
        """``len(loader)``, or an upper bound of the training batches an epoch can yield (YOLOv5 derives its
        warm-up length and the ``ni`` step counter from it once: under-counting would let ``ni`` repeat)."""
        n = len(loader)
        if not self.active:
            return n
        schedule = None if self.session is None else self.session.schedule
        switches = schedule is not None and len(schedule.starts) > 1
        samples = n * loader.batch_size + (1 if switches else 0)  # the hard subset may hold one more image
        if not self.online or self.cfg.method == "composer-sb":  # Composer-SB cuts batches, never adds any
            return math.ceil(samples / loader.batch_size)
        rho = self.rho(loader)
        return max(1, math.ceil((samples + rho - 1) / rho))

    def epoch(self, loader, epoch: int, epochs: int, model: nn.Module = None, compute_loss: Callable = None,
              amp: bool = False):
        """The batches to train on in ``epoch``: the loader itself without online selection, else the selected
        batches of exactly ``rho`` images (a short remainder only at the end of the last epoch)."""
        self.epochs = epochs
        if not self.active:
            return loader
        if self.online and self.selection is None:
            if model is None or compute_loss is None:
                raise ValueError("online selection needs the model and YOLOv5's ComputeLoss")
            self._start_selection(loader, epochs, model, compute_loss, amp)
        return self._trained(loader, epoch, last=epoch == epochs - 1)

    def _start_selection(self, loader, epochs, model, compute_loss, amp) -> None:
        if self.session is None:  # no offline subset: the loader's listing is the full one
            self._open(list(loader.dataset.im_files))
        selector = self.cfg.online_selector(self.rank, epochs=epochs)
        score = make_score_fn(model, compute_loss, self.device, amp)
        if self.cfg.method == "composer-sb":
            self.selection = ComposerSelection(selector, score, epochs, ops=YoloV5BatchOps)
        else:
            self.selection = OnlineSelection(ReuseGate(selector), score, self.rho(loader), ops=YoloV5BatchOps,
                                             index_fn=self.index)
            mosaic = mosaic_probability(getattr(loader, "dataset", None))
            line = mosaic_reuse_line(self.cfg, f"hyp mosaic {mosaic:g}", epochs) if mosaic > 0 else None
            if line:
                self.say(line)
        self.session.attach(self.selection)  # with a resumed run's state, on each rank its own

    def _trained(self, loader, epoch: int, last: bool):
        """The epoch's training batches (the online selection's, or the loader's), each booked with the session,
        and the epoch's accounting after the last (every rank), with RS2's keep fraction.
        YOLOv5 decides when to step."""
        session = self.session
        gate = self.selection.selector if self.selection is not None else None
        if isinstance(gate, ReuseGate):  # the loader of this epoch (rebuilt at an IDS switch, RS2) decides
            gate.follow_mosaic(mosaic_probability(getattr(loader, "dataset", None)) > 0)
        session.start_epoch(epoch)
        for batch in loader if self.selection is None else self.selection.epoch(loader, epoch, last):
            session.trained(self.index(batch))
            yield batch
        extra = {}
        if self.selection is not None:  # whether η-reuse was on (the Ultralytics trainer's key)
            extra["scoring_reuse"] = getattr(self.selection.selector, "reuse", False)
        if self.rs2 is not None:
            extra["keep_fraction"] = self.rs2.per_epoch / self.rs2.num_samples
        session.end_training(**extra)

    def end_epoch(self, epoch: int, results: Sequence[float], stop: bool = False) -> None:
        """After YOLOv5's validation, on the main rank: the epoch's record with ``results`` (YOLOv5's ``(P, R,
        mAP@.5, mAP@.5:.95, losses…)``; with ``--noval`` an epoch before the last has none), one line to the
        logger, and the summary after the last epoch — or after the epoch early stopping ends the run at
        (``stop``, YOLOv5's ``--patience``)."""
        if not self.active:
            return
        validated = not self.args.get("noval") or epoch + 1 == self.epochs
        rec = self.session.write_epoch(epoch, {"map50": float(results[2]) if validated else None,
                                             "map50_95": float(results[3]) if validated else None})
        self.say(epoch_line(rec, "images"))
        if stop or epoch + 1 == self.epochs:
            self.session.files.write_summary("map50_95")

    # ---------------------------------------------------------------------------------------- state
    def state_dict(self) -> Optional[dict]:
        """The session's state for YOLOv5's checkpoint: the selection counts and every rank's online-selection
        state (gathered after each epoch's training: YOLOv5 saves its checkpoint on the main rank only); before
        the session exists, what :meth:`load_state_dict` was given."""
        if self.session is None:
            return self.pending_state
        return self.session.state_dict()

    def load_state_dict(self, state: Optional[dict], epoch: Optional[int] = None) -> None:
        """Restore from a checkpoint written by :meth:`state_dict` (``epoch``: the checkpoint's epoch); each rank
        takes its own selection state back."""
        if epoch is not None:
            self.resume_epoch = epoch + 1
        if not state:
            return
        if self.session is None:
            self.pending_state = state
        else:
            self.session.load_state_dict(state, rank=self.rank)

def _config(opt) -> ReduceConfig:
    return config_from_args(opt, seed=getattr(opt, "seed", 0) or 0, train_losses=False, sample_weights=False)


def given_reduce_flags(argv: Sequence[str]) -> dict:
    """The data-reduction flags set in the command line ``argv`` (dest → value), whatever their values; the
    other arguments (YOLOv5's own) are left alone. A flag may be abbreviated as YOLOv5's own parser allows
    (``--adonis-et 1``): that parser, holding both sets of flags, has already refused an ambiguous one."""
    parser = add_reduce_arguments(argparse.ArgumentParser(add_help=False))
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_known_args(list(argv))[0])


def resume_flags(opt, argv: Sequence[str], save_dir=None) -> dict:
    """On ``--resume``, YOLOv5 replaces ``opt`` with the run's ``opt.yaml`` and drops the command line: the
    data-reduction flags given in ``argv`` are put back over it, checked against the run's (:func:`check_resume`:
    a changed η or history length of a method the run uses is honoured, any other change refused before any
    work) and, honoured, written to ``<save_dir>/opt.yaml`` (on rank 0), which a later ``--resume`` reads.
    Returns the honoured changes (flag → (the run's value, the new one))."""
    started = _config(opt).describe()
    given = given_reduce_flags(argv)
    for dest, value in given.items():
        setattr(opt, dest, value)
    honoured = check_resume(started, _config(opt).describe(), f"--resume {getattr(opt, 'weights', '') or opt.resume}",
                            DROP_FLAGS, "another --name")
    path = Path(save_dir) / "opt.yaml" if save_dir is not None else None
    if honoured and distributed.rank() == 0 and path is not None and path.is_file():
        import yaml

        saved = yaml.safe_load(path.read_text()) or {}
        write_text(path, yaml.safe_dump({**saved, **given}, sort_keys=False))
    return honoured


def setup(opt, save_dir, device=None, log: Callable = print, root=None, argv: Optional[Sequence[str]] = None
          ) -> DataReduce:
    """The :class:`DataReduce` for YOLOv5's parsed ``opt`` (identity hooks when no data-reduction flag is given).

    ``root``: the dataset root (``data_dict["path"]``) that manifest ids are made relative to. A resumed run
    (``opt.resume``) takes the data-reduction flags of its command line (``argv``, default ``sys.argv[1:]``) over
    the ``opt.yaml`` YOLOv5 restored (:func:`resume_flags`).
    """
    if not hasattr(opt, "adonis"):  # options from a parser without our flags (e.g. an old opt.yaml on --resume)
        for k, v in vars(add_reduce_arguments(argparse.ArgumentParser()).parse_args([])).items():
            setattr(opt, k, v)
    honoured = {}
    if getattr(opt, "resume", False):
        honoured = resume_flags(opt, sys.argv[1:] if argv is None else argv, save_dir)
    red = DataReduce(_config(opt), save_dir, device=device, log=log, root=root, rect=bool(getattr(opt, "rect", False)),
                     quad=bool(getattr(opt, "quad", False)), args=vars(opt))
    if honoured:
        red.honoured = honoured
        red.say(resumed_line(honoured))
    return red
