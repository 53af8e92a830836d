"""Ultralytics ``DetectionTrainer`` with IDS and ADONIS (paper §3; one dataset-wide prototype for detection).

IDS embeds whole training images, ranks them by distance to one dataset-wide centroid, writes the manifest and
restricts Ultralytics' ``YOLODataset`` to the kept images before its DataLoader is built (switching from the
easy to the hard subset at epoch γ). ADONIS wraps the training loader: each raw batch is scored with the model
being trained (one detection loss per image), the selected images are queued, and the trainer receives batches of
exactly ``rho`` images; with ``reuse_train_loss`` each training step's per-image losses (the training criterion's,
:class:`WeightedDetectionLoss`) refresh the loss cache, so a trained image needs no scoring forward for η epochs.
RS2 and InfoBatch restrict the dataset to each epoch's subset (InfoBatch weights the
per-image loss of its kept well-learned images, :class:`WeightedDetectionLoss`, and scores images by their training
loss); Composer-SB cuts each active batch to its kept images (:class:`~datareduce.online.ComposerSelection`).

The run folder (Ultralytics' ``save_dir``) holds the run files every host writes (:mod:`datareduce.run_files`),
which ``datareduce report`` reads: ``log.jsonl`` (a ``run`` record, an ``ids`` record for an offline subset, one
``epoch`` record per epoch, a closing ``summary``), ``manifest.json`` (the offline subset) and
``selection_counts.npy`` (how many times each image of the full training listing was back-propagated, summed over
DDP ranks, written at every epoch end and carried over a resume), next to Ultralytics' own ``args.yaml``,
``results.csv`` and ``weights/`` (their names do not collide).

Our settings are bound to a trainer class (:meth:`DataReduceDetectionTrainer.with_settings`, keywords named as the
trainer's flags): Ultralytics builds the trainer from its class, and its DDP subprocess rebuilds it from the class
alone (pickled by value, with the settings) and Ultralytics' own arguments, so neither unknown override keys nor
attributes set on an instance would reach it.

    >>> from ultralytics import YOLO
    >>> trainer = DataReduceDetectionTrainer.with_settings(ids_alpha=0.8, adonis_eta=3)
    >>> YOLO("yolov5n.yaml").train(trainer=trainer, data="coco128/data.yaml", project="/abs/runs", seed=0)

Importing this module changes nothing (no environment variable, setting, file or patch): the trainer switches
Ultralytics' network paths off when it is built (:func:`~.ultralytics_env.ensure_offline`).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .ultralytics_env import (ULTRALYTICS_MIN, check_private_overrides, check_ultralytics, ensure_offline,
                              no_amp_download)

check_ultralytics()  # a check only: the [yolo] extra is installed at a tested release (else one line naming pip)

from ultralytics.cfg import get_cfg  # noqa: E402
from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402
from ultralytics.utils import DEFAULT_CFG, LOCAL_RANK, LOGGER, RANK  # noqa: E402
from ultralytics.utils.patches import override_configs  # noqa: E402
from ultralytics.utils.torch_utils import autocast, init_seeds, unwrap_model  # noqa: E402

from .. import manifest, offline  # noqa: E402
from .._validate import UsageError, check_number  # noqa: E402
from ..atomic import write_torch  # noqa: E402
from ..config import ReduceConfig  # noqa: E402
from ..distributed import gather_1d, gather_losses  # noqa: E402
from ..embed import build_extractor  # noqa: E402
from ..flags import (GIVE_FLAGS, add_reduce_arguments, changed_record, check_resume, config_from_args,  # noqa: E402
                     resumed_line)
from ..host_support import Host, check_supported  # noqa: E402
from ..infobatch import InfoBatchPruner  # noqa: E402
from ..online import ComposerSelection, OnlineSelection, ReuseGate, mosaic_reuse_line  # noqa: E402
from ..rs2 import RS2Subsets  # noqa: E402
from ..run_files import COUNTS_NAME  # noqa: E402
from ..session import ReductionSession  # noqa: E402
from .ultralytics_data import restrict_dataset  # noqa: E402
from .ultralytics_loss import PerImageDetectionLoss  # noqa: E402

# What this trainer runs: a detection image has no single class, and its ADONIS selection hands no loss weights
# to the criterion (InfoBatch's weights go through WeightedDetectionLoss).
HOST = Host("trainers/yolo_train.py", one_class_per_sample=False, loss_weights=False,
            methods=("full", "sb", "stale-sb", "random-keep", "rpd", "ssp", "rs2", "composer-sb", "infobatch"),
            why_not={"rpc": "it draws a class-balanced subset, and a detection image has no single class: use "
                            "--reduce rpd (a random subset of the images)"})
BOX_KEYS = ("cls", "bboxes")  # per-box entries of a detection batch (besides batch_idx)
# The private BaseTrainer methods DataReduceDetectionTrainer overrides, as they read in Ultralytics 8.4.190 (the
# tested range starts there, ULTRALYTICS_MIN), and what each override adds. Re-read them upstream before widening the
# range; tests/test_ultralytics_trainer.py checks that this list is complete and that their signatures still match.
PRIVATE_OVERRIDES = {
    "_build_train_pipeline": "gradient accumulation recomputed for ADONIS / SB batches of rho images",
    "_close_dataloader_mosaic": "η-reuse starts once mosaic is off (an image then looks alike every epoch)",
    "_setup_scheduler": "the paper's exponential schedule when lr_gamma is set",
    "_setup_train": "the AMP check kept from downloading its weights",
}
assert ULTRALYTICS_MIN == "8.4.190", "re-read PRIVATE_OVERRIDES upstream, then update the release named above"


@dataclass(frozen=True)
class TrainerSettings:
    """What our trainer needs beyond Ultralytics' own arguments: the data reduction, and optionally the paper's
    exponential learning-rate schedule (``lr_gamma``: lr × gamma per epoch, in place of Ultralytics' linear one)."""

    reduce: ReduceConfig = ReduceConfig()
    lr_gamma: Optional[float] = None

    def __post_init__(self):
        if self.lr_gamma is not None:
            check_number("lr_gamma", self.lr_gamma, low=0, high=1, low_open=True)

    def to_dict(self) -> dict:
        """JSON-ready (the inverse of :meth:`from_dict`)."""
        return {"reduce": self.reduce.to_dict(), "lr_gamma": self.lr_gamma}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainerSettings":
        return cls(reduce=ReduceConfig.from_dict(d["reduce"]), lr_gamma=d.get("lr_gamma"))

    @staticmethod
    def flag_names() -> tuple:
        """The keywords :meth:`from_flags` takes: the data-reduction flags' names without their dashes."""
        return tuple(vars(add_reduce_arguments(argparse.ArgumentParser(add_help=False)).parse_args([])))

    @classmethod
    def from_flags(cls, seed: int = 0, lr_gamma: Optional[float] = None, epochs: Optional[int] = None,
                   **flags) -> "TrainerSettings":
        """The settings that ``trainers/yolo_train.py``'s flags give, each flag named without its dashes:
        ``adonis_eta=3`` is ``--adonis-eta 3``, ``reduce="rs2"`` is ``--reduce rs2``, ``adonis_reuse_train_loss=True``
        the switch. ``seed`` seeds the selectors (the trainer passes Ultralytics' ``seed``), ``epochs`` is the
        run's (``adonis_mode="prune"`` anneals its last 1/8; detection weights no image, so that mode trains
        the kept images unweighted). Bad values raise :class:`~datareduce._validate.UsageError`."""
        args = add_reduce_arguments(argparse.ArgumentParser(add_help=False)).parse_args([])
        unknown = sorted(set(flags) - set(vars(args)))
        if unknown:
            raise UsageError(f"unknown data-reduction setting(s) {', '.join(unknown)}: use the trainer's flag names "
                             "without their dashes (adonis_eta=3, ids_alpha=0.8, reduce='rs2')")
        vars(args).update(flags)
        return cls(config_from_args(args, seed=seed, sample_weights=False, epochs=epochs), lr_gamma)


class YoloBatchOps:
    """``size``/``take``/``cat`` for Ultralytics detection batches (the accumulator's batch protocol).

    A batch holds per-image entries (``img`` and tuples such as ``im_file``) and per-box ``cls``/``bboxes`` whose
    ``batch_idx`` names their image; taking images renumbers their boxes, concatenating offsets them.
    """

    @staticmethod
    def size(batch) -> int:
        return batch["img"].shape[0]

    @staticmethod
    def take(batch, rows: torch.Tensor) -> dict:
        rows = rows.long().cpu()
        position = torch.full((YoloBatchOps.size(batch),), -1, dtype=torch.long)
        position[rows] = torch.arange(len(rows))
        owner = position[batch["batch_idx"].long()]
        boxes = (owner >= 0).nonzero().flatten()
        boxes = boxes[torch.argsort(owner[boxes], stable=True)]  # the loss expects boxes grouped by image
        out = {}
        for k, v in batch.items():
            if k == "batch_idx":
                out[k] = owner[boxes].to(v.dtype)
            elif k in BOX_KEYS:
                out[k] = v[boxes]
            elif isinstance(v, torch.Tensor):
                out[k] = v[rows.to(v.device)]
            else:
                out[k] = tuple(v[i] for i in rows.tolist())
        return out

    @staticmethod
    def cat(batches) -> dict:
        offsets = torch.tensor([0] + [YoloBatchOps.size(b) for b in batches[:-1]]).cumsum(0).tolist()
        out = {}
        for k, v in batches[0].items():
            parts = [b[k] for b in batches]
            if k == "batch_idx":
                out[k] = torch.cat([p + o for p, o in zip(parts, offsets)])
            elif isinstance(v, torch.Tensor):
                out[k] = torch.cat(parts)
            else:
                out[k] = tuple(x for p in parts for x in p)
        return out


class ReducedTrainLoader:
    """The training loader as Ultralytics' loop sees it.

    ``len()`` is an upper bound of the batches any epoch yields (the loop derives warm-up and optimizer-step
    counters from it once; under-counting would silently skip optimizer steps). Iterating yields the loader's
    batches, or with ``online`` set the ADONIS/SB selection's batches of exactly ``rho`` images. Everything
    else (``dataset``, ``sampler``, ``batch_size``, ``num_workers``, ``drop_last``, ``reset()``, ``close()``) is
    the wrapped loader's, which the trainer may swap (IDS γ switch). ``on_batch(batch)`` is called with every
    batch yielded (the trainer books it with the reduction session).
    """

    def __init__(self, loader, length: int, online: OnlineSelection | None = None, on_batch=None):
        self.loader, self.length, self.online, self.on_batch = loader, length, online, on_batch
        self.epoch, self.last = 0, False

    def __len__(self) -> int:
        return self.length

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __iter__(self):
        source = self.loader if self.online is None else self.online.epoch(self.loader, self.epoch, self.last)
        for batch in source:
            if self.on_batch is not None:
                self.on_batch(batch)
            yield batch


class TrainingImages:
    """The trainer's training images as the reduction session sees them: the full listing's size, the offline
    subset the next train dataset build keeps (Ultralytics builds its datasets itself: the trainer rebuilds its
    loader when the subset changes) and the size of the dataset in place. It plans no visiting order."""

    sampler = None
    labels = None  # a detection image has no single class

    def __init__(self, trainer, num_samples: int):
        self.trainer, self.num_samples = trainer, num_samples
        self.positions = None  # full-listing positions the train dataset keeps (None: all)

    def use_subset(self, positions) -> None:
        self.positions = positions

    def num_train(self) -> int:
        return len(self.trainer.train_loader.dataset)


class WeightedDetectionLoss:
    """The model's ``v8DetectionLoss`` with one loss weight per image (InfoBatch's 1/(1−r) on kept well-learned
    images): the batch loss is ``B · Σ_i w_i · numerator_i / max(Σ_i score_sum_i, 1)`` (box, cls, dfl), the stock
    loss's normalisation, so all ``w_i = 1`` gives back the stock loss. ``weights_of(batch)`` gives the weights
    (None: all 1, the stock loss). With ``index_fn``, each call keeps the batch's per-image losses
    (:class:`PerImageDetectionLoss`, unweighted: the score ADONIS ranks by) in ``seen`` with the images' positions,
    for InfoBatch's scores and ADONIS's reuse of training losses. Installed as the training model's ``criterion``
    (after the EMA copy is made)."""

    def __init__(self, model: nn.Module, weights_of=None, index_fn=None):
        current = getattr(model, "criterion", None)
        self.per_image = current.per_image if isinstance(current, WeightedDetectionLoss) else \
            PerImageDetectionLoss(model)  # over the stock criterion, also when the model already holds a wrapper
        self.criterion = self.per_image.criterion
        self.loss_names = self.criterion.loss_names
        self.weights_of, self.index_fn = weights_of, index_fn
        self.seen = []  # (image positions, per-image losses) of the training forwards since the last reset

    def __call__(self, preds, batch: dict):
        numerators, score_sums = self.per_image.terms(preds, batch)
        weighted = numerators
        if self.weights_of is not None:
            weighted = numerators * self.weights_of(batch).to(device=numerators.device, dtype=numerators.dtype)[:, None]
        loss = weighted.sum(0) / score_sums.sum().clamp(min=1)
        if self.index_fn is not None:
            self.seen.append((self.index_fn(batch), (numerators.sum(1) / score_sums.clamp(min=1)).detach()))
        return loss * numerators.shape[0], dict(zip(self.loss_names, loss.detach()))

    def take_seen(self):
        """The positions and losses kept since the last call (CPU tensors), and forget them."""
        seen, self.seen = self.seen, []
        if not seen:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0)
        return (torch.cat([i.reshape(-1).long().cpu() for i, _ in seen]),
                torch.cat([v.reshape(-1).float().cpu() for _, v in seen]))


@contextlib.contextmanager
def batch_statistics_only(model: nn.Module):
    """Inside, BatchNorm layers in train mode normalise with the batch's statistics but leave their running
    statistics and counters untouched, so a scoring forward measures what the training forward would."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


# Our per-epoch bookkeeping as Ultralytics callbacks (in firing order), registered by the trainer with add_callback.
# Module-level functions: Ultralytics' DDP subprocess receives the parent's callbacks pickled, and these pickle by
# reference, so the rebuilt trainer recognises them as its own and does not register them twice.
def on_pretrain_routine_end(trainer):
    trainer.end_pretrain()


def on_train_epoch_start(trainer):
    trainer.start_epoch_reduction()


def on_train_batch_end(trainer):
    trainer.end_batch()


def on_train_epoch_end(trainer):
    trainer.end_training_epoch()


def on_fit_epoch_end(trainer):
    trainer.end_epoch()


def on_train_end(trainer):
    trainer.log_summary()


CALLBACKS = {f.__name__: f for f in (on_pretrain_routine_end, on_train_epoch_start, on_train_batch_end,
                                     on_train_epoch_end, on_fit_epoch_end, on_train_end)}


class DataReduceDetectionTrainer(DetectionTrainer):
    """``DetectionTrainer`` that trains on an IDS (or RPD/SSP) subset and/or with ADONIS (or SB) selection, or
    with RS2, InfoBatch or Composer-SB.

    The settings are bound to the class (:meth:`with_settings`); the class itself trains exactly like the stock
    trainer (plus the per-epoch log), except that an epoch that back-propagated images never ends without an
    optimizer step (:meth:`step_pending_gradients`). Only the detection task is supported.
    """

    bound_settings: Optional[dict] = None  # what with_settings bound (plain values: DDP pickles it with the class)

    @classmethod
    def with_settings(cls, config: Optional[ReduceConfig] = None, *, lr_gamma: Optional[float] = None,
                      **flags) -> type:
        """This trainer class with our settings bound to it, for ``YOLO(...).train(trainer=...)``.

        Either ``flags``, named as ``trainers/yolo_train.py``'s flags without their dashes (``adonis_eta=3``,
        ``ids_alpha=0.8``, ``reduce="infobatch"``, ``adonis_reuse_train_loss=True``; the selectors are then seeded
        with Ultralytics' ``seed=``), or a whole :class:`~datareduce.config.ReduceConfig` as ``config`` (used as
        it is). ``lr_gamma``: lr × gamma per epoch instead of Ultralytics' linear decay. The values are checked
        here (:class:`~datareduce._validate.UsageError`). The settings are class attributes, so Ultralytics' DDP
        subprocess, which rebuilds the trainer from its pickled class, trains with them too.

            >>> YOLO("yolov5n.yaml").train(trainer=DataReduceDetectionTrainer.with_settings(adonis_eta=3), data=...)
        """
        if config is not None and flags:
            raise UsageError(f"pass either a ReduceConfig or flags ({', '.join(sorted(flags))}), not both")
        if config is not None:
            if not isinstance(config, ReduceConfig):
                raise UsageError(f"config must be a ReduceConfig, not {type(config).__name__}")
            bound = TrainerSettings(config, lr_gamma).to_dict()
        else:
            flags = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in flags.items()}
            TrainerSettings.from_flags(lr_gamma=lr_gamma, epochs=1, **flags)  # checked now (the run's epochs later)
            bound = {"flags": flags, "lr_gamma": lr_gamma}

        class Bound(cls):
            bound_settings = bound

        Bound.__name__, Bound.__doc__ = cls.__name__, cls.__doc__
        Bound.__qualname__ = f"{cls.__qualname__}.with_settings.<locals>.{cls.__name__}"  # says where it was made
        return Bound

    @classmethod
    def settings_for(cls, seed: int = 0, epochs: Optional[int] = None) -> TrainerSettings:
        """The bound settings (``seed`` and ``epochs``: Ultralytics', for settings bound as flags); none bound:
        full data."""
        bound = cls.bound_settings
        if bound is None:
            return TrainerSettings()
        if "flags" in bound:
            return TrainerSettings.from_flags(seed=seed, lr_gamma=bound["lr_gamma"], epochs=epochs, **bound["flags"])
        return TrainerSettings.from_dict(bound)

    def __init__(self, cfg=DEFAULT_CFG, overrides=None, _callbacks=None):
        ensure_offline()  # before any Ultralytics network path: online flags off, a local font, env for DDP workers
        check_private_overrides(type(self), DetectionTrainer, PRIVATE_OVERRIDES)  # the methods we override still match
        asked = get_cfg(cfg, overrides)
        self.settings = self.settings_for(seed=asked.seed, epochs=asked.epochs)
        self.reduce = self.settings.reduce
        check_supported(self.reduce, HOST)
        adonis = self.reduce.adonis
        # ADONIS reuse of training losses: each step's per-image losses (the training criterion's) refresh the cache
        self.reuse_train_losses = adonis is not None and adonis.reuse_train_loss
        super().__init__(cfg, overrides, _callbacks)
        if (overrides or {}).get("workers") and not self.args.workers and RANK in {-1, 0}:  # the stock CPU choice
            LOGGER.info(f"datareduce: on {self.device.type} Ultralytics loads images in the training process: "
                        f"workers={overrides['workers']} is not used")
        if (self.args.epochs, self.args.seed) != (asked.epochs, asked.seed):  # resume= took the checkpoint's
            self.settings = self.settings_for(seed=self.args.seed, epochs=self.args.epochs)
            self.reduce = self.settings.reduce
        if self.args.task != "detect":
            raise UsageError(f"DataReduceDetectionTrainer trains detection models, not task={self.args.task!r}")
        self.offline = self.reduce.ids is not None or self.reduce.method in ("rpd", "ssp")
        if self.offline and self.args.rect:
            raise UsageError("IDS / RPD / SSP subsets need rect=False (rect batches are shaped over the full set)")
        if self.reduce.method == "infobatch" and self.args.rect:
            raise UsageError("--reduce infobatch trains a per-epoch subset: it needs rect=False")
        for event, callback in CALLBACKS.items():  # once: a DDP worker receives them with the parent's callbacks
            if callback not in self.callbacks[event]:
                self.add_callback(event, callback)
        self.session = None  # the reduction session, made with the full training listing (its first dataset build)
        self.images = None  # the training images as the session sees them
        self.rs2 = None  # RS2: the per-epoch random subsets of the full training listing
        self.infobatch = None  # InfoBatch: the pruner (scores of the full training listing, this epoch's weights)
        self.infobatch_pruned = 0  # images the current epoch's plan pruned
        self.weighted_loss = None  # InfoBatch, ADONIS reusing training losses: the training model's criterion
        self.full_index = None  # resolved image path -> position in the full training listing
        self.loaded_epoch = None  # RS2, InfoBatch: the epoch whose subset the current train dataset holds
        self.online = None
        self.selector = None
        self.per_image_loss = None
        self.mosaic_closed = False
        self.batches_since_step = 0  # back-propagated batches whose gradients wait for the next optimizer step
        self.stepped = False  # whether this batch stepped the optimizer

    # ------------------------------------------------------------------ IDS: the offline subset
    def build_dataset(self, img_path, mode="train", batch=None):
        """The stock dataset; in mode ``train`` with an offline method, restricted to the current subset."""
        if mode != "train":
            return super().build_dataset(img_path, mode, batch)
        with override_configs(self.args, {"cache": False}):  # never load images we may drop
            dataset = super().build_dataset(img_path, mode, batch)
        if self.session is None:
            self.start_session(dataset.im_files)
        epoch = getattr(self, "epoch", self.start_epoch)
        if self.offline:
            self.session.use_subset(epoch)
            restrict_dataset(dataset, [dataset.im_files[i] for i in self.images.positions])
        elif self.reduce.method == "rs2":
            if self.rs2 is None:
                self.rs2 = RS2Subsets(len(dataset.im_files), self.reduce.rs2.fraction, seed=self.reduce.seed)
            self.loaded_epoch = epoch
            kept = sorted(self.rs2.plan(epoch).tolist())
            restrict_dataset(dataset, [dataset.im_files[i] for i in kept])
        elif self.reduce.method == "infobatch":
            if self.infobatch is None:
                self.infobatch = InfoBatchPruner(len(dataset.im_files), self.epochs, ratio=self.reduce.infobatch.ratio,
                                                 delta=self.reduce.infobatch.delta, seed=self.reduce.seed)
            self.loaded_epoch = epoch
            kept = sorted(self.infobatch.plan(epoch).tolist())  # the same on every rank: the scores are shared
            self.infobatch_pruned = self.infobatch.num_samples - len(kept)
            restrict_dataset(dataset, [dataset.im_files[i] for i in kept])
        if self.args.cache:
            restrict_dataset(dataset, dataset.im_files, cache=self.args.cache)  # cache the kept images only
        return dataset

    def start_session(self, im_files) -> None:
        """The reduction session of the full training listing ``im_files`` (the first train dataset build), with
        this run's offline subset(s)."""
        self.full_index = {os.path.realpath(f): i for i, f in enumerate(im_files)}
        listing = self.sample_ids(im_files)
        made, info = self.select_subsets(listing, im_files) if self.offline else (None, None)
        self.images = TrainingImages(self, len(self.full_index))
        self.session = ReductionSession(self.reduce, self.save_dir, self.images, self.epochs, main=RANK in {-1, 0},
                                        manifest=made, keys=listing if made is not None else None)
        if made is not None:
            self.session.files.offline_subset(made, **info)

    def sample_ids(self, im_files) -> list:
        """The manifest's ids of the images: paths relative to the dataset root."""
        root = Path(self.data["path"]).resolve()
        return [os.path.relpath(os.path.abspath(f), root) for f in im_files]

    def select_subsets(self, listing, im_files) -> tuple:
        """The manifest of this run's offline subset(s), read from ``--ids-manifest`` or computed, and what it cost
        (the keywords of :meth:`~datareduce.run_files.RunFiles.offline_subset`)."""
        cfg = self.reduce
        start = time.time()
        if cfg.ids is not None and cfg.ids.manifest:
            chosen = manifest.read(cfg.ids.manifest)
            manifest.verify(chosen, listing)
            self.say_kept(chosen, f"from {cfg.ids.manifest}")
            return chosen, {"time_s": time.time() - start, "source": cfg.ids.manifest}
        emb, record, embed_time = None, None, None
        if offline.needs_embeddings(cfg):
            ex = build_extractor(cfg.embed.extractor, weights=cfg.embed.weights, image_size=cfg.embed.image_size,
                                 device=self.device)
            # the dataset is built one rank at a time here (torch_distributed_zero_first): no sharded collective
            emb, embed_time = offline.embed_samples(im_files, listing, self.data["path"], ex, cfg.embed, shard=False)
            record = offline.extractor_record(cfg.embed, ex)
        made = offline.build_manifest(cfg, listing, emb, extractor=record)
        seconds = time.time() - start
        self.say_kept(made, f"in {seconds:.1f}s")
        return made, {"time_s": seconds, "embed_time_s": embed_time}

    @staticmethod
    def say_kept(made: dict, how: str) -> None:
        """One line on the main rank: how many training images the offline subset(s) kept."""
        if RANK not in {-1, 0}:
            return
        subs = made["subsets"]
        kept = "; ".join(f"{s['num_kept']}" + (f" ({s['mode']})" if s.get("mode") else "")
                         + (f" from epoch {s['from_epoch']}" if len(subs) > 1 else "") for s in subs)
        LOGGER.info(f"datareduce: {made['method'].upper()} kept {kept} of {made['dataset']['num_samples']} "
                    f"training images ({how})")

    # ------------------------------------------------------------------ ADONIS: the online selection
    def get_dataloader(self, dataset_path, batch_size=16, rank=0, mode="train"):
        """The stock loader; in mode ``train`` wrapped in a :class:`ReducedTrainLoader`."""
        loader = super().get_dataloader(dataset_path, batch_size, rank, mode)
        if mode != "train":
            return loader
        selector = self.reduce.online_selector(max(RANK, 0), epochs=self.epochs) if self.online is None else None
        if selector is not None and self.reduce.method == "composer-sb":
            self.selector = selector
            self.online = ComposerSelection(selector, self.score, self.epochs, ops=YoloBatchOps)
        elif selector is not None:
            self.selector = ReuseGate(selector)
            # η-reuse is off while mosaic is on (the rule of every detection host); Ultralytics closes mosaic at
            # epoch epochs - close_mosaic (close_mosaic 0: never)
            off_from = self.epochs - self.args.close_mosaic if self.args.close_mosaic else None
            setting = f"mosaic={self.args.mosaic}, close_mosaic={self.args.close_mosaic}"
            line = mosaic_reuse_line(self.reduce, setting, self.epochs, off_from) if self.mosaic_on() else None
            if line and RANK in {-1, 0}:
                LOGGER.info(line)
            rho = (self.reduce.adonis.rho if self.reduce.adonis is not None else None) or batch_size
            self.online = OnlineSelection(self.selector, self.score, rho, YoloBatchOps, self.image_indices,
                                          reuse_train_losses=self.reuse_train_losses)
        if selector is not None:
            self.session.attach(self.online)
        return ReducedTrainLoader(loader, self.max_batches(loader), self.online, self.book_batch)

    def max_batches(self, loader) -> int:
        """An upper bound of the training batches of any epoch on this rank, over every subset of the run."""
        images = len(loader.dataset)
        if self.session.schedule is not None:
            images = self.session.schedule.largest()
        if self.rs2 is not None:
            images = self.rs2.per_epoch
        if self.infobatch is not None:
            images = self.infobatch.num_samples  # an epoch's plan visits at most every image
        per_rank = math.ceil(images / max(self.world_size, 1))
        bound = math.ceil(per_rank / loader.batch_size)  # warm-up (ω) epochs train the loader's batches as is
        return max(bound, self.online.max_batches(per_rank)) if self.online is not None else bound

    def book_batch(self, batch) -> None:
        """A training batch, booked with the session by its images' positions in the full training listing."""
        self.session.trained(self.image_indices(batch))

    def image_indices(self, batch) -> torch.Tensor:
        """Positions of a batch's images in the full training listing (the key of the η-reuse loss cache)."""
        return torch.tensor([self.full_index[os.path.realpath(f)] for f in batch["im_file"]])

    def score(self, batch) -> torch.Tensor:
        """Per-image detection losses of a raw batch under the current model: no grad, no state change."""
        model = unwrap_model(self.model)
        if self.per_image_loss is None:  # over the stock criterion (install_training_loss sets it when it wraps it)
            self.per_image_loss = PerImageDetectionLoss(model)
        amp = torch.bfloat16 if self.args.amp == "bf16" else self.amp
        with torch.no_grad(), batch_statistics_only(model), autocast(amp, device=self.device.type):
            batch = self.preprocess_batch(dict(batch))
            return self.per_image_loss(model(batch["img"]), batch)

    def _build_train_pipeline(self):
        """Stock pipeline; with online selection the gradient accumulation is recomputed for batches of ``rho``."""
        super()._build_train_pipeline()
        if not isinstance(self.online, OnlineSelection) or self.online.rho * max(self.world_size, 1) == self.batch_size:
            return
        images = self.online.rho * max(self.world_size, 1)
        self.accumulate = min(max(round(self.args.nbs / images), 1), len(self.train_loader) * self.epochs)
        weight_decay = self.args.weight_decay * images * self.accumulate / self.args.nbs
        for group in self.optimizer.param_groups:
            if group.get("param_group") in {"weight", "muon"}:
                group["weight_decay"] = weight_decay

    def _close_dataloader_mosaic(self):
        """Stock mosaic closing; from now on an image looks alike every epoch, so η-reuse may start."""
        super()._close_dataloader_mosaic()
        self.mosaic_closed = True
        if isinstance(self.selector, ReuseGate):
            self.selector.follow_mosaic(False)

    def mosaic_on(self) -> bool:
        """Whether the training images are mosaics until mosaic closes: ``mosaic`` > 0 without ``rect`` (what
        Ultralytics' ``YOLODataset`` decides)."""
        return bool(self.args.mosaic) and not self.args.rect

    def _setup_scheduler(self):
        """Stock schedule, or lr × ``lr_gamma`` per epoch (the paper's YOLOv5 protocol) when that is set."""
        if self.settings.lr_gamma is None:
            return super()._setup_scheduler()
        gamma = self.settings.lr_gamma
        self.lf = lambda epoch: gamma**epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda=self.lf)

    def _setup_train(self):
        """Stock setup, with Ultralytics' AMP check kept from downloading its weights."""
        with no_amp_download():
            super()._setup_train()

    def optimizer_step(self):
        """Stock step, counted for the epoch record."""
        super().optimizer_step()
        self.session.stepped()
        self.stepped = True

    def count_batch(self):
        """After each training batch: how many back-propagated batches wait for an optimizer step."""
        self.batches_since_step = 0 if self.stepped else self.batches_since_step + 1
        self.stepped = False

    def step_pending_gradients(self):
        """Step once at the end of an epoch that back-propagated images but made no optimizer step, so that its
        gradients are applied. Ultralytics steps every ``accumulate`` batches (nbs=64 images) and counts batches as
        if every epoch yielded ``len(train_loader)``; an epoch of a few batches (ADONIS batches of rho images on a
        small set, an RS2 or IDS subset, a tiny dataset) can end short of that, and the run's last epoch then loses
        them. This step's weight decay is scaled to the batches it holds (of ``accumulate``), as Ultralytics scales
        it to the images a step sees. An epoch that stepped keeps Ultralytics' cadence untouched."""
        if self.session.book.steps or not any(p.grad is not None for p in self.model.parameters()):
            return
        pending = max(self.batches_since_step, 1)
        LOGGER.info(f"datareduce: epoch {self.epoch + 1}: {pending} batch(es) back-propagated since the last "
                    f"optimizer step, fewer than the {self.accumulate} Ultralytics accumulates (nbs={self.args.nbs} "
                    "images): stepping at the end of the epoch")
        share = min(pending, self.accumulate) / max(self.accumulate, 1)
        decays = [group["weight_decay"] for group in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["weight_decay"] *= share
        try:
            self.optimizer_step()
        finally:
            for group, decay in zip(self.optimizer.param_groups, decays):
                group["weight_decay"] = decay
        self.batches_since_step, self.stepped = 0, False

    # ------------------------------------------------------------------ per-epoch bookkeeping
    def end_pretrain(self):
        """After the stock setup (and resume): the training criterion goes in, then the log opens."""
        self.install_training_loss()
        self.open_log()

    def install_training_loss(self):
        """InfoBatch, and ADONIS reusing training losses: the training model's criterion becomes a
        :class:`WeightedDetectionLoss` that keeps each training forward's per-image losses (InfoBatch: with this
        epoch's weights of the pruner, for its scores; ADONIS: unweighted, the stock loss, for the loss cache). Set
        after the EMA copy is made (and rebuilt on resume), so the EMA, the validator and the checkpoints keep the
        stock criterion."""
        if self.infobatch is None and not self.reuse_train_losses:
            return
        model = unwrap_model(self.model)
        if isinstance(getattr(model, "criterion", None), WeightedDetectionLoss):
            return
        weights_of = None
        if self.infobatch is not None:
            pruner, index_fn = self.infobatch, self.image_indices
            weights_of = lambda batch: pruner.loss_weights(index_fn(batch))  # noqa: E731
        self.weighted_loss = WeightedDetectionLoss(model, weights_of, self.image_indices)
        self.per_image_loss = self.weighted_loss.per_image  # scoring: the same per-image loss, stock criterion
        model.criterion = self.weighted_loss

    def end_batch(self):
        """After each training batch: count it towards the next optimizer step, and (ADONIS reusing training
        losses) hand its per-image training losses to the loss cache. Every rank runs this: the cache gathers every
        rank's losses (while mosaic is on, the selector caches none, :class:`ReuseGate`)."""
        self.count_batch()
        if self.reuse_train_losses and self.weighted_loss is not None:
            positions, losses = self.weighted_loss.take_seen()
            self.online.record_training_losses(positions, losses, self.epoch)

    def open_log(self):
        """Start ``log.jsonl`` on the main rank with the ``run`` record: Ultralytics' arguments (as in
        ``args.yaml``) and its data (a resumed run keeps its log's, and drops the records of the epochs it
        redoes)."""
        if RANK in {-1, 0}:  # the only rank with a test loader
            self.session.files.open(vars(self.args), resume_epoch=self.start_epoch if self.resume else None,
                                    dataset="yolo", num_val=len(self.test_loader.dataset), num_classes=self.data["nc"],
                                    device=str(self.device))

    def start_epoch_reduction(self):
        """Swap in the γ subset when it starts (RS2, InfoBatch: this epoch's subset), tell the loader and selector
        where training stands, and start the session's epoch (its clock starts after the loader is in place)."""
        if (self.session.use_subset(self.epoch)
                or ((self.rs2 is not None or self.infobatch is not None) and self.epoch != self.loaded_epoch)):
            self.train_loader.close()
            loader = super().get_dataloader(self.data["train"], self.train_loader.batch_size, LOCAL_RANK, "train")
            self.train_loader.loader = loader  # built for self.epoch's subset by build_dataset
            if self.mosaic_closed:
                super()._close_dataloader_mosaic()
        self.train_loader.epoch, self.train_loader.last = self.epoch, self.epoch + 1 >= self.epochs
        # the epoch's shuffle and augmentations from (seed, epoch, rank) alone, so a run resumed at this epoch
        # draws the data the uninterrupted one drew (loader workers keep their own streams: with workers=0)
        init_seeds(self.args.seed + 1 + max(RANK, 0) + 1_000_003 * (self.epoch + 1),
                   deterministic=self.args.deterministic)
        if isinstance(self.selector, ReuseGate):
            self.selector.follow_mosaic(self.mosaic_on() and not self.mosaic_closed)
        if self.weighted_loss is not None:
            self.weighted_loss.take_seen()  # a redone epoch (NaN loss) drops the losses of its first try
        self.session.start_epoch(self.epoch)  # a redone epoch (NaN loss) forgets what its first try booked

    def end_training_epoch(self):
        """After the epoch's last batch, before validation: apply its pending gradients if it made no step, then
        count it."""
        self.step_pending_gradients()
        self.count_epoch()

    def count_epoch(self):
        """The epoch's accounting for the whole job through the session (all ranks run this hook), with what only
        this trainer knows: whether η-reuse was on, InfoBatch's pruning."""
        if self.tloss is None:
            self.stand_in_losses()
        extra = {}
        if self.online is not None:
            extra["scoring_reuse"] = getattr(self.selector, "reuse", False)
        if self.infobatch is not None:
            self.update_infobatch()
            extra.update(pruned_samples=int(self.infobatch_pruned),
                         keep_fraction=1 - self.infobatch_pruned / self.infobatch.num_samples)
        self.session.end_training(**extra)

    def update_infobatch(self):
        """The epoch's training-forward losses of every rank update the pruner's scores, the same on every rank
        (the next epoch's plan is drawn from them; all ranks run this hook)."""
        if self.weighted_loss is not None:
            positions, losses = self.weighted_loss.take_seen()
        else:  # no training forward yet
            positions, losses = torch.zeros(0, dtype=torch.long), torch.zeros(0)
        self.infobatch.update(gather_1d(positions), gather_losses(losses))

    def end_epoch(self):
        """Save the selection state and the counts, and write the ``epoch`` record with its mAP. All ranks run this
        hook; Ultralytics' final evaluation reruns it on the main rank after the last epoch, when no epoch waits
        for its record. (An epoch that Ultralytics redoes after a NaN loss counts once: the session forgets its
        first try.)"""
        if not self.session.awaiting_record:
            return
        self.save_selection_state()
        validated = self.args.val or self.epoch + 1 >= self.epochs
        m = self.metrics or {}
        self.session.write_epoch(self.epoch, {"map50": m.get("metrics/mAP50(B)") if validated else None,
                                            "map50_95": m.get("metrics/mAP50-95(B)") if validated else None})

    def selection_state_file(self) -> Path:
        """The session's state (every rank's online selection, the selection counts, the offline subset) and the
        InfoBatch scores (the same on every rank), saved every epoch next to Ultralytics' checkpoints (which have no
        room for them)."""
        return self.wdir / "selection.pt"

    def save_selection_state(self):
        """Gather every rank's selection state (all ranks call this) and save it from the main rank."""
        state = self.session.state_dict()
        if RANK in {-1, 0}:
            write_torch(self.selection_state_file(),
                        {"epoch": self.epoch, **state,
                         "infobatch": self.infobatch.state_dict() if self.infobatch is not None else None})

    def resume_training(self, ckpt):
        """Stock resume, plus the selection counts and, on each rank, its selector's history, loss cache, RNG and
        queued images of the resumed epoch."""
        super().resume_training(ckpt)
        if ckpt is None or not self.resume:
            return
        path = self.selection_state_file()
        state = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
        if state is None or state["epoch"] != self.start_epoch - 1:
            LOGGER.warning(f"{path}: no selection state of epoch {self.start_epoch}; selection and selection counts "
                           "start afresh")
            state = {}
        # the data reduction it was started with (the state's, else the log's run record) against this one's: a
        # changed η or history length is honoured (the selector built for this run keeps it), any other refused
        honoured = check_resume(self.session.started_settings(state), self.reduce.describe(),
                                f"resume={self.args.resume}", GIVE_FLAGS, "another name=")
        record = {"epoch": self.start_epoch}
        if honoured:
            LOGGER.info(resumed_line(honoured))
            record["changed"] = changed_record(honoured)
        restored = self.session.load_state_dict(state)
        if self.online is not None:
            record["selection_state_restored"] = restored["selection_state_restored"]
        if self.infobatch is not None:
            record["selection_state_restored"] = state.get("infobatch") is not None
            if record["selection_state_restored"]:
                self.infobatch.load_state_dict(state["infobatch"])
            self.loaded_epoch = None  # the first epoch's plan is drawn again, from the restored scores
        record["selection_counts_restored"] = restored["selection_counts_restored"]
        if state and not record["selection_counts_restored"]:
            LOGGER.warning(f"{path}: no selection counts of this training set; {COUNTS_NAME} counts from epoch "
                           f"{self.start_epoch} on")
        self.session.files.write("resume", record)

    def stand_in_losses(self):
        """An epoch without a training batch (fewer than rho images selected so far) must still leave what the
        stock loop reads after it: the epoch's mean loss (NaN), the loss names, and a last loss where none exists."""
        LOGGER.warning(f"epoch {self.epoch + 1}: no training batch (fewer than rho images selected so far)")
        self.loss_names = self.loss_names or unwrap_model(self.model).criterion.loss_names
        self.tloss = {name: torch.tensor(float("nan"), device=self.device) for name in self.loss_names}
        if self.loss is None:  # nothing trained yet in this run
            self.loss = torch.zeros((), device=self.device)
            self.loss_items = {name: torch.zeros((), device=self.device) for name in self.loss_names}

    def log_summary(self):
        """The run's totals, with the final evaluation of the best checkpoint."""
        m = self.metrics or {}
        self.session.files.write_summary("map50_95", final_eval_map50=m.get("metrics/mAP50(B)"),
                                 final_eval_map50_95=m.get("metrics/mAP50-95(B)"))
