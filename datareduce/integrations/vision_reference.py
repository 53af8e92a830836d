"""Hooks that ``patches/vision-classification.patch`` calls from torchvision's classification reference script
(pytorch/vision ``references/classification/train.py``).

The patch adds the ``--ids-*`` / ``--adonis-*`` / ``--reduce`` flags and six calls; the work is done here, with
the same pieces ``trainers/classify.py`` uses (:mod:`datareduce.integrations.classification`):

* :func:`setup` (after ``load_data``): IDS — or SSP / RPC / RPD — keeps its subset of the reference's training
  ``ImageFolder`` *in place* (``samples``/``targets``/``imgs``), and the train sampler is re-sized to it
  (``DistributedSampler`` and ``RASampler`` cache their length). With ``--ids-gamma`` the hard subset replaces
  the easy one at epoch γ.
* :meth:`VisionReduce.epoch_loader` (the loader handed to ``train_one_epoch``): an iterable of the epoch's
  ``(image, target)`` batches on the device, whose dataset indices are recorded from the batch sampler (the
  reference's batches do not carry them; the DataLoader delivers batches in sampler order) to count each
  sample's back-propagations. With ADONIS (or SB, Stale-SB,
  Composer-SB, random-keep) each forward batch is scored with per-sample cross-entropy (label smoothing and
  mixup/cutmix soft targets included), and the selected samples are trained in batches of exactly ``rho``.
  InfoBatch and RS2 plan each epoch's visiting order: the loader is rebuilt around a sampler that visits the
  plan, sharded over the ranks like ``DistributedSampler``.
* :meth:`VisionReduce.criterion` (after the reference builds its ``CrossEntropyLoss``): for the methods that
  weight each sample's loss (InfoBatch, ``--adonis-rescale``) or take the training step's per-sample losses
  (InfoBatch, ``--adonis-reuse-train-loss``), a loss module that, for each batch the epoch loader yielded,
  computes the per-sample cross-entropy (same label smoothing, soft targets too), hands it to the selection
  (every rank, every step) and returns the mean of the weighted losses, ``(w·ℓ).mean()``, as
  ``trainers/classify.py`` does; called outside such a batch (``evaluate``) it is the reference's criterion,
  the plain mean. For every other run it returns the reference's criterion itself.
* :meth:`VisionReduce.end_epoch` (with the epoch's top-1 accuracy from ``evaluate``): the epoch's record.
* :meth:`VisionReduce.save_to` / :meth:`VisionReduce.load_from`: the selector state and the selection counts in
  the reference's checkpoint.

The run files (:mod:`datareduce.run_files`: ``log.jsonl``, ``manifest.json``, ``selection_counts.npy``) go to
``<output-dir>/datareduce/``, apart from the reference's own checkpoints; one line per epoch goes to the console.

With no data-reduction flag every hook is the identity (the reference trains exactly as before).
"""
from __future__ import annotations

import collections
import contextlib
import inspect
import time
import types
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import distributed, host_support
from .._validate import UsageError
from ..config import OFFLINE, ONLINE, ReduceConfig
from ..flags import GIVE_FLAGS, add_reduce_arguments, changed_record, check_resume, config_from_args, resumed_line
from ..host_support import Host
from ..run_files import SUBFOLDER, epoch_line
from ..session import ReductionSession
from .classification.loss import per_sample_loss
from .classification.offline_subset import build_extractor_for, build_offline_manifest, check_manifest, manifest_ids
from .classification.reducer_choice import build_reducer
from .classification.samplers import TrainSampler
from .classification.scoring import make_score_fn
from .classification.training_set import TrainingSet

__all__ = ["add_arguments", "setup", "check_supported", "VisionReduce", "StepLoss", "RecordingBatchSampler",
           "refresh_sampler"]

PLANNED = ("infobatch", "rs2")  # methods whose reducer sets each epoch's visiting order (TrainSampler.set_plan)


def _needs_step_losses(cfg: Optional[ReduceConfig]) -> bool:
    """Whether the training step must weight each sample's loss or hand back the per-sample losses."""
    if cfg is None:
        return False
    if cfg.adonis is not None:
        return bool(cfg.adonis.rescale or cfg.adonis.reuse_train_loss)
    return cfg.method == "infobatch"


def add_arguments(parser):
    """Add the ``--ids-*``, ``--adonis-*`` and ``--reduce`` flags (the same as ``trainers/classify.py``'s), and
    ``--seed`` for their draws where the reference has none (it seeds nothing itself)."""
    if "--seed" not in parser._option_string_actions:
        parser.add_argument("--seed", default=0, type=int,
                            help="seed of the data-reduction draws: subsets, ADONIS picks, RS2 epochs (default 0)")
    return add_reduce_arguments(parser)


# ============================================================================================= samplers
class RecordingBatchSampler:
    """A batch sampler that remembers every batch of indices it hands out, in order, until :meth:`pop`.

    A ``DataLoader`` (workers and prefetching included) delivers batches in the order its batch sampler made
    them, so the n-th batch popped belongs to the n-th batch the loader yields.
    """

    def __init__(self, batch_sampler):
        self.batch_sampler = batch_sampler
        self.queue = collections.deque()

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        self.queue.clear()  # an abandoned epoch leaves nothing behind
        for batch in self.batch_sampler:
            self.queue.append(list(batch))
            yield batch

    def pop(self) -> list:
        if not self.queue:
            raise RuntimeError("the loader yielded a batch its batch sampler never made (was it iterated twice?)")
        return self.queue.popleft()


def refresh_sampler(sampler, dataset) -> None:
    """Re-size a sampler after ``dataset`` changed size in place. ``DistributedSampler`` and the reference's
    ``RASampler`` fix their length at construction; they are re-initialised with their own settings (the epoch
    set by ``set_epoch`` is kept). Samplers that read ``len(dataset)`` as they go need nothing."""
    if not (hasattr(sampler, "num_replicas") and hasattr(sampler, "total_size")):
        return
    params = inspect.signature(type(sampler).__init__).parameters
    kwargs = {name: getattr(sampler, name) for name in params
              if name not in ("self", "dataset") and hasattr(sampler, name)}
    epoch = getattr(sampler, "epoch", 0)
    type(sampler).__init__(sampler, dataset, **kwargs)
    sampler.epoch = epoch


@contextlib.contextmanager
def _keyed(dataset):
    """Give a plain ``ImageFolder`` the ``sample_keys()`` the manifest code asks for (paths relative to its
    root), for the duration of the block only (a bound method in the instance would not pickle to workers)."""
    if hasattr(dataset, "sample_keys"):
        yield dataset
        return
    from ..datasets import IndexedImageFolder

    dataset.sample_keys = types.MethodType(IndexedImageFolder.sample_keys, dataset)
    try:
        yield dataset
    finally:
        del dataset.sample_keys


# ============================================================================================= the hooks object
class VisionReduce:
    """What the patched ``train.py`` holds; inactive (every hook the identity) without data-reduction flags."""

    def __init__(self, cfg: Optional[ReduceConfig], args=None, dataset=None, train_sampler=None):
        self.cfg = cfg
        self.args = args
        self.dataset = dataset
        self.sampler = train_sampler
        self.reducer = None
        self.recorder: Optional[RecordingBatchSampler] = None
        self.loader: Optional[DataLoader] = None
        self.plan_sampler: Optional[TrainSampler] = None  # InfoBatch / RS2: visits each epoch's plan
        self.loss: Optional[StepLoss] = None  # what :meth:`criterion` returned, when the run needs one
        self.step: Optional[_Step] = None  # the training batch the loader yielded last, until the loss takes it
        self.resume_epoch = None
        self.rank = distributed.rank()
        self.online = cfg is not None and (cfg.adonis is not None or cfg.method in ONLINE)
        out = getattr(args, "output_dir", None)  # the reference writes nothing without one; nor do we then
        self.training_set = None if cfg is None else ReferenceTrainingSet(dataset, train_sampler)
        self.session = None if cfg is None else ReductionSession(
            cfg, Path(out or ".") / SUBFOLDER, self.training_set, int(args.epochs), main=self.rank == 0 and bool(out))
        self.opened = False  # the run files open with the first epoch (after load_from)

    @property
    def active(self) -> bool:
        return self.cfg is not None and (self.session.schedule is not None or self.online)

    def say(self, text: str) -> None:
        if self.rank == 0:
            print(text, flush=True)

    # ------------------------------------------------------------------------------------ offline subset
    def select(self) -> None:
        """Make (or read) the offline subset's manifest and keep its samples in place."""
        cfg, args, dataset = self.cfg, self.args, self.dataset
        if cfg.ids is None and cfg.method not in OFFLINE:
            return
        start = time.perf_counter()
        device = _device(args)
        with _keyed(dataset):
            if cfg.ids is not None and cfg.ids.manifest:
                manifest, info = check_manifest(cfg.ids.manifest, dataset), {"source": cfg.ids.manifest}
            else:
                embeds = cfg.ids is not None or cfg.method == "ssp"
                extractor = build_extractor_for(cfg, device) if embeds else None
                if extractor is not None:
                    self.say(f"datareduce: embedding {len(dataset.samples)} training images with {extractor.name}")
                manifest, info = build_offline_manifest(dataset, cfg, extractor, workers=int(args.workers))
            if not hasattr(dataset, "sample_ids"):  # full-set index of each kept sample (the ADONIS cache key)
                dataset.sample_ids = np.arange(len(dataset.samples), dtype=np.int64)
            self.session.use_manifest(manifest, manifest_ids(dataset))
        self.session.use_subset(int(getattr(args, "start_epoch", 0)))
        info["time_s"] = time.perf_counter() - start
        subsets = manifest["subsets"]
        self.session.files.offline_subset(manifest, **info)
        self.say(f"datareduce: {manifest['method']} keeps {[s['num_kept'] for s in subsets]} of "
                 f"{manifest['dataset']['num_samples']} training images (from epochs "
                 f"{[s['from_epoch'] for s in subsets]}) in {info['time_s']:.1f}s")

    # ------------------------------------------------------------------------------------ criterion
    def criterion(self, criterion):
        """The loss ``train_one_epoch`` (and ``evaluate``) should call: ``criterion`` itself unless this run
        weights each sample's loss or reuses the training losses; then a :class:`StepLoss` around it."""
        if not _needs_step_losses(self.cfg):
            return criterion
        if not isinstance(criterion, torch.nn.CrossEntropyLoss) or criterion.weight is not None \
                or criterion.reduction != "mean":
            raise ValueError("per-sample loss weights and training losses need the reference's criterion, "
                             f"nn.CrossEntropyLoss(label_smoothing=...) with the mean reduction, not {criterion!r}")
        self.loss = StepLoss(criterion, self)
        return self.loss

    def take_step(self) -> Optional["_Step"]:
        """The training batch the criterion is called for (None outside a reduced training step)."""
        step, self.step = self.step, None
        return step

    def after_step(self, step: "_Step", losses: torch.Tensor) -> None:
        """The training step's per-sample losses to the selection (InfoBatch's scores, or with
        ``--adonis-reuse-train-loss`` ADONIS's loss cache); both gather every rank's: call on every rank."""
        self.reducer.after_step(step.indices, losses)

    # ------------------------------------------------------------------------------------ per epoch
    def epoch_loader(self, data_loader, epoch: int, model=None):
        """What ``train_one_epoch`` iterates in ``epoch``: ``data_loader`` itself without data reduction, else the
        epoch's training batches of ``(image, target)``: all of the offline subset (switched at γ), or those the
        online selection chose; ``model`` (``model_without_ddp``) scores them."""
        if not self.active:
            return data_loader
        if _needs_step_losses(self.cfg) and self.loss is None:
            raise RuntimeError("this run weights each sample's loss or reuses the training losses: the criterion "
                               "train_one_epoch calls must be `criterion = reduce.criterion(criterion)` "
                               "(patches/vision-classification.patch)")
        if self.reducer is None:
            if model is None and self.online:
                raise ValueError("online selection needs the model (pass model_without_ddp)")
            self._start(data_loader, model)
        if not self.opened:  # a resumed run has been told its epoch (load_from) by now
            self.session.files.open(vars(self.args), resume_epoch=self.resume_epoch, dataset="imagefolder",
                            num_classes=len(self.dataset.classes), device=str(_device(self.args)))
            self.opened = True
        if self.session.start_epoch(epoch):  # InfoBatch / RS2 also set this epoch's visiting order (len() follows)
            self.say(f"datareduce: epoch {epoch} trains on {len(self.dataset)} images (subset switch)")
        return _SelectedEpoch(self)

    def _start(self, data_loader, model) -> None:
        args, cfg = self.args, self.cfg
        score = None
        if self.online:
            score = make_score_fn(_bare_module(model), float(getattr(args, "label_smoothing", 0.0)), bn="batch",
                                  amp=bool(getattr(args, "amp", False)))
        self.reducer = build_reducer(cfg, score, int(args.batch_size), int(args.epochs), self.dataset,
                                     distributed.rank())
        batch_sampler = data_loader.batch_sampler
        if cfg.method in PLANNED:
            self.plan_sampler = TrainSampler(self.dataset, distributed.rank(), distributed.world_size(),
                                             seed=cfg.seed)
            self.training_set.sampler = self.plan_sampler
            batch_sampler = torch.utils.data.BatchSampler(
                self.plan_sampler, getattr(batch_sampler, "batch_size", None) or int(args.batch_size),
                bool(getattr(batch_sampler, "drop_last", False)))
        elif self.online and not self.reducer.online:
            raise NotImplementedError(f"online method {cfg.method!r} is not available in the vision patch")
        self.recorder = RecordingBatchSampler(batch_sampler)
        self.loader = _rebuild(data_loader, self.recorder)
        self.session.attach(self.reducer)  # with a resumed run's state

    def max_batches(self) -> int:
        """An upper bound of the epoch's training batches: the online loop's where it queues samples (0 where it
        only cuts batches, as Composer-SB), else the loader's."""
        n = len(self.loader)
        loop = getattr(self.reducer, "loop", None)
        if loop is None:
            return n
        samples = len(self.recorder.batch_sampler.sampler) if hasattr(self.recorder.batch_sampler, "sampler") \
            else n * int(self.args.batch_size)
        return loop.max_batches(samples) or n

    def end_epoch(self, epoch: int, top1: Optional[float] = None) -> None:
        """After the epoch's evaluation (``top1``: what the reference's ``evaluate`` returns): the epoch's record,
        the selection counts, one line on the console, and after the last epoch the summary. Every rank."""
        if not self.active:
            return
        rec = self.session.write_epoch(epoch, {"top1": top1})
        self.say(epoch_line(rec))
        if epoch == int(self.args.epochs) - 1:
            self.session.files.write_summary("top1")

    # ------------------------------------------------------------------------------------ checkpoint
    def save_to(self, checkpoint: dict) -> None:
        """Add the session's state (every rank's selection state, the selection counts, the offline subset) to the
        reference's checkpoint."""
        if self.active:
            checkpoint["datareduce"] = self.session.state_dict()

    def load_from(self, checkpoint: dict) -> None:
        """Restore the selector state and the selection counts from a checkpoint written with :meth:`save_to`
        (on ``--resume``)."""
        if self.cfg is None:
            return
        state = checkpoint.get("datareduce")
        # the data reduction the run was started with (the state's, else the log's run record; a checkpoint
        # without our state is a full-data run's) against this one's: a changed η or history length is honoured
        # (the reducer built for this run keeps it), any other change refused before any training
        was = self.session.started_settings(state) if state is not None else ReduceConfig().describe()
        where = f"--resume {getattr(self.args, 'resume', '') or 'checkpoint'}"
        honoured = check_resume(was, self.cfg.describe(), where, GIVE_FLAGS, "another --output-dir")
        if not self.active:
            return
        self.resume_epoch = int(checkpoint.get("epoch", -1)) + 1
        if honoured:
            self.say(resumed_line(honoured))
            self.session.files.write("resume", {"epoch": self.resume_epoch, "changed": changed_record(honoured)})
        if state is not None:
            self.session.load_state_dict(state, device=_device(self.args))  # held for the reducer until it exists


class _SelectedEpoch:
    """One epoch of training batches; ``len()`` is an upper bound (the reference's logger needs one). Each batch
    is booked with the session (the reference steps the optimizer once a batch, in lockstep over the ranks), and
    the exhausted epoch's accounting handed to the run files."""

    def __init__(self, owner: VisionReduce):
        self.owner = owner

    def __len__(self) -> int:
        return self.owner.max_batches()

    def __iter__(self):
        o = self.owner
        o.step = None
        try:
            for (images, targets, indices), weights in o.session.batches(_Indexed(o, _device(o.args))):
                if o.loss is not None:  # for the criterion's call on this batch
                    o.step = _Step(weights, indices, len(targets))
                elif weights is not None:
                    raise RuntimeError(f"{o.reducer.name} weights each sample's loss, but no criterion from "
                                       "reduce.criterion() applies the weights")
                o.session.stepped()
                o.session.trained(indices)
                yield images, targets
                if o.step is not None:
                    raise RuntimeError("train_one_epoch trained a batch without calling the criterion that "
                                       "reduce.criterion() returned: its loss weights and losses were not applied")
        finally:
            o.step = None
        o.session.end_training()


class ReferenceTrainingSet(TrainingSet):
    """The reference's training set as the session drives it: an offline subset kept in place also re-sizes the
    reference's own sampler (:func:`refresh_sampler`); ``sampler`` is the one that visits InfoBatch's or RS2's
    plan (None for every other method: the reference's loop plans nothing)."""

    def __init__(self, dataset, reference_sampler):
        super().__init__(dataset)
        self.reference_sampler = reference_sampler

    def use_subset(self, positions) -> None:
        super().use_subset(positions)
        refresh_sampler(self.reference_sampler, self.dataset)


class _Step:
    """One training batch as the criterion needs it: loss weights (or None), full-set indices, size."""

    __slots__ = ("weights", "indices", "size")

    def __init__(self, weights, indices, size: int):
        self.weights, self.indices, self.size = weights, indices, size


class StepLoss(torch.nn.Module):
    """The criterion of a run that weights each sample's loss or reuses the training losses.

    Called for a training batch of the epoch loader: per-sample cross-entropy (the wrapped
    ``CrossEntropyLoss``'s label smoothing; mixup/cutmix soft targets work), handed to the selection, and the
    mean of the weighted losses returned (``(w·ℓ).mean()``: InfoBatch's and ADONIS's weights keep the batch
    loss an unbiased estimate of the full batch's). Called at any other time (``evaluate``): the wrapped
    criterion, i.e. the plain mean.
    """

    def __init__(self, criterion: torch.nn.CrossEntropyLoss, owner: VisionReduce):
        super().__init__()
        self.criterion = criterion
        self.owner = owner

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        step = self.owner.take_step()
        if step is None:
            return self.criterion(output, target)
        losses = per_sample_loss(output, target, float(self.criterion.label_smoothing))
        if losses.numel() != step.size:
            raise RuntimeError(f"the criterion got {losses.numel()} samples for a training batch of {step.size}")
        weights = step.weights
        loss = losses.mean() if weights is None else (losses * weights.to(losses.device, losses.dtype)).mean()
        self.owner.after_step(step, losses.detach())
        return loss


class _Indexed:
    """The forward batches as ``(image, target, full-set index)`` on the device, sized like the loader."""

    def __init__(self, owner: VisionReduce, device):
        self.owner, self.device = owner, device

    def __len__(self) -> int:
        return len(self.owner.loader)

    def __iter__(self):
        o = self.owner
        ids = getattr(o.dataset, "sample_ids", None)
        non_blocking = self.device.type == "cuda"
        for images, targets in o.loader:
            pos = o.recorder.pop()
            index = torch.as_tensor(ids[pos] if ids is not None else pos, dtype=torch.long)
            yield (images.to(self.device, non_blocking=non_blocking),
                   targets.to(self.device, non_blocking=non_blocking), index)


def _rebuild(loader: DataLoader, batch_sampler) -> DataLoader:
    """A DataLoader like ``loader`` (same dataset, workers, collate) that draws its batches from ``batch_sampler``."""
    kw = dict(num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
              timeout=loader.timeout, worker_init_fn=loader.worker_init_fn, generator=loader.generator,
              multiprocessing_context=loader.multiprocessing_context)
    if loader.num_workers > 0:
        kw.update(prefetch_factor=loader.prefetch_factor, persistent_workers=loader.persistent_workers)
    return DataLoader(loader.dataset, batch_sampler=batch_sampler, **kw)


def _device(args) -> torch.device:
    return torch.device(getattr(args, "device", "cpu") or "cpu")


def _bare_module(model):
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


HOST = Host("the torchvision reference's train.py")  # its loop runs every method (the reducers of trainers/classify.py)


def check_supported(cfg: ReduceConfig, args) -> None:
    """Refuse, before any work, what the reference's loop cannot run (every method runs; some combinations do
    not): the classification loop's refusals, and a planned method with the reference's ``--ra-sampler``."""
    host_support.check_supported(cfg, HOST)
    if cfg.method in PLANNED and getattr(args, "distributed", False) and getattr(args, "ra_sampler", False):
        raise UsageError(f"--reduce {cfg.method} visits its own plan each epoch, which replaces the --ra-sampler's "
                         "repeated augmentation: drop one of them")


def setup(args, dataset, train_sampler) -> VisionReduce:
    """The :class:`VisionReduce` for the reference's ``args`` (call right after ``load_data``).

    Applies the offline subset (IDS, SSP, RPC, RPD) to ``dataset`` in place and re-sizes ``train_sampler``.
    Inactive when ``args`` has no data-reduction flag set — or none at all (``train_quantization.py``'s parser).
    """
    if not hasattr(args, "adonis"):
        return VisionReduce(None)
    cfg = config_from_args(args, seed=getattr(args, "seed", None) or 0, train_losses=True)
    check_supported(cfg, args)
    red = VisionReduce(cfg, args, dataset, train_sampler)
    red.select()
    return red
