"""Glue between the datareduce core and a torchvision-reference-style classification loop.

``trainers/classify.py`` reads top to bottom like torchvision's ``references/classification/train.py``; the
pieces it needs beyond the reference live here:

* **Distributed** set-up from the torchrun environment (gloo on CPU, NCCL on CUDA).
* **Data**: the sampler (seeded per epoch, sharded over ranks, follows in-place subset changes), loaders whose
  batches are ``(images, targets, dataset indices)``, and IDS / SSP / RPC / RPD subsets applied *in place* to
  the training dataset (``samples``/``targets``/``imgs`` of an ImageFolder), never through a ``Subset``.
* **Reducers**: one object per method that turns the epoch's loader into training batches: full data,
  online selection (ADONIS, SB, Stale-SB through :class:`datareduce.online.OnlineSelection`), Composer-SB
  and InfoBatch. All keep DDP ranks in lockstep (the same number of optimizer steps per epoch).
* **Scoring**: per-sample cross-entropy under ``no_grad`` that changes no model state (see
  :func:`scoring_mode`).
* ``train_one_epoch`` / ``evaluate`` with honest accounting, checkpoints that carry every selector's state.

Console output (tqdm bars, prints) is allowed here; the core stays silent.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Sampler

from .. import distributed as ddp_ops
from ..distributed import all_sum, barrier, broadcast_object, gather_objects
from .. import manifest as manifest_mod
from .. import offline
from .._validate import UsageError
from ..atomic import write_torch
from ..config import ReduceConfig
from ..online import OnlineSelection
from ..paths import embeddings_dir
from ..selection_counts import SelectionCounts

__all__ = [
    "DistInfo", "resolve_device", "init_distributed", "all_sum", "gather_objects", "broadcast_object", "barrier",
    "TrainSampler", "ShardSampler", "keep_samples", "full_labels", "full_size", "raw_images", "to_device",
    "manifest_ids", "check_manifest", "build_extractor_for", "build_offline_manifest", "SubsetSchedule",
    "per_sample_loss", "scoring_mode", "make_score_fn", "check_supported", "build_reducer", "SelectionCounts",
    "train_one_epoch", "evaluate", "job_epoch_record", "reducer_states", "save_checkpoint", "load_checkpoint",
    "restore_reducer", "rng_state", "seed_epoch",
]


# =============================================================================================== distributed
@dataclass
class DistInfo:
    enabled: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(requested: Optional[str]) -> torch.device:
    """``None`` picks CUDA when available, else the CPU; an explicit ``cuda`` without a GPU is an error."""
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {requested}: CUDA is not available on this machine; use --device cpu")
    return dev


def init_distributed(device: torch.device, dist_url: str = "env://") -> tuple:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set); returns (DistInfo, device).

    Each rank uses ``cuda:LOCAL_RANK`` on GPUs (NCCL) or the CPU (gloo).
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo(), device
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method=dist_url, world_size=world, rank=rank)
    return DistInfo(True, rank, world, local_rank), device


# ====================================================================================================== data
class TrainSampler(Sampler):
    """Shuffled order seeded by (seed, epoch), padded to a multiple of the world size and sharded by rank.

    Reads ``len(dataset)`` at every iteration, so an in-place subset change (IDS γ switch) needs no new
    loader. ``set_plan(positions)`` replaces the shuffle with a given visiting order for one epoch (InfoBatch).
    Every rank yields the same number of positions.
    """

    def __init__(self, dataset, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True):
        self.dataset, self.rank, self.world_size = dataset, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch = 0
        self.plan: Optional[torch.Tensor] = None
        self.local = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_plan(self, positions: Optional[torch.Tensor], local: bool = False) -> None:
        """Visit ``positions`` this epoch instead of the shuffle: a global order sharded over the ranks, or,
        with ``local``, this rank's own order as is (a planned ADONIS epoch). None: back to the shuffle."""
        self.plan = None if positions is None else torch.as_tensor(positions).long()
        self.local = local

    def _order(self) -> torch.Tensor:
        if self.plan is not None:
            return self.plan
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(n, generator=g)

    def rank_order(self) -> torch.Tensor:
        """The positions this rank visits this epoch, in order."""
        order = self._order()
        if self.plan is not None and self.local:
            return order
        total = math.ceil(len(order) / self.world_size) * self.world_size
        if total > len(order) and len(order):  # pad by repeating the head (as DistributedSampler does)
            order = torch.cat([order, order[: total - len(order)]])
        return order[self.rank: total: self.world_size]

    def __len__(self) -> int:
        if self.plan is not None and self.local:
            return len(self.plan)
        n = len(self.plan) if self.plan is not None else len(self.dataset)
        return math.ceil(n / self.world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.rank_order().tolist())


class ShardSampler(Sampler):
    """Positions ``rank, rank + world, …`` of a dataset, unpadded (evaluation: every sample counted once)."""

    def __init__(self, dataset, rank: int = 0, world_size: int = 1):
        self.dataset, self.rank, self.world_size = dataset, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.world_size))

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.world_size))


def keep_samples(dataset, positions: Optional[Sequence[int]]) -> None:
    """Keep only the samples at ``positions`` of the *full* training set, in place (None: all again).

    Works on ImageFolder (``samples``, ``targets``, ``imgs``), torchvision CIFAR (``data``, ``targets``) and
    :class:`~datareduce.datasets.DigitsDataset`; ``sample_ids`` records the full-set index of each kept
    sample, so the indices the loader yields (ADONIS cache, selection counts) never change meaning. The full
    lists are remembered on first use, so a later call (the γ switch) can pick any other subset.
    """
    full = getattr(dataset, "_datareduce_full", None)
    if full is None:
        full = {}
        for name in ("samples", "targets", "data", "sample_ids", "_source_positions"):
            if hasattr(dataset, name):
                full[name] = getattr(dataset, name)
        dataset._datareduce_full = full
    if positions is None:
        pos = np.arange(len(full["targets"]))
    else:
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size == 0:
            raise ValueError("a subset must keep at least one sample")
    for name, value in full.items():
        if isinstance(value, list):
            setattr(dataset, name, [value[i] for i in pos])
        elif isinstance(value, torch.Tensor):
            setattr(dataset, name, value[torch.from_numpy(pos)])
        else:
            setattr(dataset, name, value[pos])
    if hasattr(dataset, "imgs") and "samples" in full:
        dataset.imgs = dataset.samples


def full_labels(dataset) -> np.ndarray:
    """Class index of every sample of the *full* training set (whatever subset is active)."""
    full = getattr(dataset, "_datareduce_full", None)
    return np.asarray(full["targets"] if full else dataset.targets, dtype=np.int64)


def full_size(dataset) -> int:
    return len(full_labels(dataset))


class _DigitsPIL:
    """The full digits training set as RGB PIL images (for the feature extractor's own preprocessing)."""

    def __init__(self, data: torch.Tensor):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        from PIL import Image

        arr = (self.data[i, 0].numpy() * 255).round().astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")


class _CifarPIL:
    def __init__(self, data: np.ndarray):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        from PIL import Image

        return Image.fromarray(self.data[i])


def raw_images(dataset):
    """The full training set as :func:`datareduce.embed.embed` wants it: file paths or PIL images."""
    full = getattr(dataset, "_datareduce_full", None) or {}
    if hasattr(dataset, "samples"):
        return [p for p, _ in full.get("samples", dataset.samples)]
    data = full.get("data", dataset.data)
    if isinstance(data, torch.Tensor):
        return _DigitsPIL(data)
    return _CifarPIL(data)


def to_device(loader, device: torch.device) -> Iterator[tuple]:
    """Move images and targets of each ``(images, targets, indices)`` batch to ``device``; indices stay on CPU."""
    non_blocking = device.type == "cuda"
    for images, targets, indices in loader:
        yield images.to(device, non_blocking=non_blocking), targets.to(device, non_blocking=non_blocking), indices


# ============================================================================== offline subsets (IDS, SSP …)
def manifest_ids(dataset) -> List[str]:
    """The sample ids a manifest is made of and checked against (relative paths or ``name/index``)."""
    return dataset.sample_keys()


def check_manifest(path, dataset) -> dict:
    """Read a manifest and refuse it unless it was made from exactly this dataset listing."""
    m = manifest_mod.read(path)
    manifest_mod.verify(m, manifest_ids(dataset))
    return m


def build_extractor_for(cfg: ReduceConfig, device: torch.device):
    """The feature extractor that IDS / SSP will use, built (and its weights checked) before anything runs."""
    from ..embed import build_extractor

    return build_extractor(cfg.embed.extractor, weights=cfg.embed.weights, device=device,
                           image_size=cfg.embed.image_size)


default_cache_dir = embeddings_dir


def build_offline_manifest(dataset, cfg: ReduceConfig, extractor=None, progress=None, batch_size: int = 64,
                           workers: int = 0) -> tuple:
    """The manifest of the offline subset(s) this run trains on (:func:`datareduce.offline.build_manifest`), and
    what making it cost. Embedding is sharded over DDP ranks; the selection is made on rank 0 and broadcast.
    Returns ``(manifest, info)`` where ``info`` holds ``embed_time_s`` and ``select_time_s``."""
    keys = manifest_ids(dataset)
    emb, record, info = None, None, {"embed_time_s": 0.0, "select_time_s": 0.0}
    if offline.needs_embeddings(cfg):
        emb, info["embed_time_s"] = offline.embed_samples(
            raw_images(dataset), keys, getattr(dataset, "root", None), extractor, cfg.embed, progress=progress,
            batch_size=batch_size, workers=workers)
        record = offline.extractor_record(cfg.embed, extractor)
    t0 = time.perf_counter()
    made = None
    if ddp_ops.rank() == 0:
        made = offline.build_manifest(cfg, keys, emb, full_labels(dataset), list(dataset.classes), record)
    made = broadcast_object(made)
    info["select_time_s"] = time.perf_counter() - t0
    return made, info


class SubsetSchedule:
    """Which full-set positions the training set holds in each epoch, from a manifest (γ switch included)."""

    def __init__(self, manifest: Optional[dict], dataset):
        self.manifest = manifest
        self.starts: List[int] = []
        self.positions: List[np.ndarray] = []
        if manifest is not None:
            keys = manifest_ids(dataset)
            manifest_mod.verify(manifest, keys)
            where = {str(k): i for i, k in enumerate(keys)}
            for s in manifest["subsets"]:
                self.starts.append(int(s["from_epoch"]))
                self.positions.append(np.sort(np.fromiter((where[k] for k in s["kept"]), dtype=np.int64)))
        self.active = None

    def positions_for(self, epoch: int) -> Optional[np.ndarray]:
        if not self.starts:
            return None
        i = max(j for j, s in enumerate(self.starts) if s <= epoch) if self.starts[0] <= epoch else 0
        return self.positions[i]

    def apply(self, dataset, epoch: int) -> bool:
        """Put the subset of ``epoch`` in place; True when it changed."""
        pos = self.positions_for(epoch)
        key = None if pos is None else id(pos)
        if key == self.active:
            return False
        keep_samples(dataset, pos)
        self.active = key
        return True


# =========================================================================================== loss and scoring
def per_sample_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy per sample (``reduction='none'``); soft targets from mixup/cutmix work too."""
    return F.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)


_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@contextlib.contextmanager
def scoring_mode(model: nn.Module, bn: str = "batch"):
    """Put ``model`` in the state the scoring forward runs in, and restore it exactly afterwards.

    Everything is in eval mode (no dropout, no RNG use). BatchNorm layers: ``bn="batch"`` (default)
    normalise with the scored batch's own statistics, as the training forward will, *without* recording
    them (``track_running_stats`` is switched off for the pass, so neither the running mean/var nor
    ``num_batches_tracked`` move); ``bn="running"`` uses the running statistics (plain eval mode).
    ``SyncBatchNorm`` layers always use running statistics here: a per-rank scoring pass of ragged size must
    not enter a collective. A batch of one sample is scored with running statistics too.
    """
    modules = list(model.modules())
    saved = [(m, m.training, getattr(m, "track_running_stats", None)) for m in modules]
    try:
        model.eval()
        if bn == "batch":
            for m in modules:
                if isinstance(m, _BN) and not isinstance(m, nn.SyncBatchNorm):
                    m.train()
                    m.track_running_stats = False
        yield model
    finally:
        for m, training, track in saved:
            m.training = training
            if track is not None:
                m.track_running_stats = track


def make_score_fn(model: nn.Module, label_smoothing: float = 0.0, bn: str = "batch", amp: bool = False):
    """``score_fn(batch) -> per-sample losses`` for :class:`~datareduce.online.OnlineSelection`.

    ``model`` is the bare module (not the DDP wrapper: the scoring pass must not sync buffers or enter
    collectives whose call counts differ between ranks).
    """
    def score(batch):
        images, targets = batch[0], batch[1]
        mode = bn if len(images) > 1 else "running"
        with torch.no_grad(), scoring_mode(model, mode), _autocast(images.device, amp):
            return per_sample_loss(model(images), targets, label_smoothing).float()

    return score


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda")
    return contextlib.nullcontext()


# ================================================================================================== reducers
class _Reducer:
    """Turns one epoch of forward batches into training batches ``(batch, loss weights or None)``."""

    online = False
    name = "full"

    def __init__(self):
        self.stats = {}
        self.sel = {"forward": 0, "selected": 0}

    def prepare_epoch(self, epoch: int, sampler: TrainSampler, last: bool = False) -> None:
        """Before the epoch's loader is iterated (inside the timed loop): set the sampler's visiting order."""
        sampler.set_plan(None)

    def batches(self, loader, epoch: int, last: bool):
        raise NotImplementedError

    def after_step(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        pass

    def epoch_record(self) -> dict:
        return dict(self.stats)

    def selection_rate(self) -> Optional[float]:
        return self.sel["selected"] / self.sel["forward"] if self.sel["forward"] else None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, device=None) -> None:
        pass


class FullReducer(_Reducer):
    """Every batch as it comes (full data, or an offline subset: IDS / SSP / RPC / RPD)."""

    def batches(self, loader, epoch, last):
        self.stats = {"forward_samples": 0, "samples_scored": 0}
        self.sel = {"forward": 0, "selected": 0}
        for batch in loader:
            n = len(batch[0])
            self.stats["forward_samples"] += n
            self.sel["forward"] += n
            self.sel["selected"] += n
            yield batch, None

    def epoch_record(self) -> dict:
        return {"forward_samples": int(all_sum([self.stats.get("forward_samples", 0)])[0]), "samples_scored": 0}


class OnlineReducer(_Reducer):
    """ADONIS, SB and Stale-SB through the core's :class:`~datareduce.online.OnlineSelection`.

    With ``batch_size == rho`` and ``plan`` on, an epoch whose selection needs no scoring forward (η-reuse,
    random-keep) is selected up front from the cached losses and the sampler visits only the kept samples,
    so the dropped ones are never loaded; ``collate_fn``/``device`` load samples carried across epochs. On
    CUDA with cuDNN autotuning, partly stale batches are scored in buckets of 32 rows (few distinct shapes).
    """

    online = True

    def __init__(self, selector, score_fn, rho: int, name: str, labels: np.ndarray, num_classes: int, *,
                 batch_size: Optional[int] = None, plan: bool = True, reuse_train_losses: bool = False,
                 collate_fn=None, device=None):
        super().__init__()
        autotuned = device is not None and torch.device(device).type == "cuda" and torch.backends.cudnn.benchmark
        self.loop = OnlineSelection(selector, score_fn, rho, label_fn=_hard_labels,
                                    reuse_train_losses=reuse_train_losses, load_fn=self._load,
                                    score_bucket=32 if autotuned else 1)
        self.name = name
        self.labels = labels
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.plan = plan and batch_size == rho
        self.collate_fn = collate_fn or torch.utils.data.default_collate
        self.device = device
        self.dataset = None
        self.planned = False
        self.epoch = None

    def _load(self, ids: torch.Tensor):
        """Samples by full-set index, collated and on the training device (for carried-over samples)."""
        pos = _positions_of(self.dataset, ids.numpy())
        images, targets, indices = self.collate_fn([self.dataset[int(p)] for p in pos])
        return images.to(self.device or "cpu"), targets.to(self.device or "cpu"), indices

    def prepare_epoch(self, epoch, sampler, last=False):
        sampler.set_plan(None)
        self.dataset, self.epoch, self.planned = sampler.dataset, epoch, False
        if not self.plan:
            return
        ids = torch.from_numpy(_sample_ids(sampler.dataset)[sampler.rank_order().numpy()])
        if not self.loop.can_plan(ids, epoch):
            return
        chosen = self.loop.plan(ids.split(self.batch_size), epoch, label_of=lambda i: self.labels[i.numpy()],
                                last=last)
        sampler.set_plan(torch.from_numpy(_positions_of(sampler.dataset, chosen.numpy())), local=True)
        self.planned = True

    def batches(self, loader, epoch, last):
        source = self.loop.planned(loader) if self.planned else self.loop.epoch(loader, epoch, last=last)
        for batch in source:
            st = self.loop.stats
            self.sel = {"forward": st.forward_samples, "selected": st.selected}
            if self.loop.weighted:  # (images, targets, indices, loss weights): the rescaling variant
                yield batch[:3], batch[3].to(batch[0].device)
            else:
                yield batch, None
        st = self.loop.stats
        self.sel = {"forward": st.forward_samples, "selected": st.selected}

    def after_step(self, indices, losses):
        self.loop.record_training_losses(indices, losses, self.epoch)

    def epoch_record(self) -> dict:
        st = self.loop.stats
        kept = self.loop.kept_indices().numpy()
        sums = all_sum([st.forward_samples, st.scored, st.selected, st.loss_sum_all, st.finite_all,
                         st.loss_sum_kept, st.finite_kept])
        per_class = all_sum(np.bincount(self.labels[kept], minlength=self.num_classes))
        fwd, scored, selected, lsa, fa, lsk, fk = sums
        return {
            "forward_samples": int(fwd), "samples_scored": int(scored), "samples_selected": int(selected),
            "samples_loaded": int(all_sum([st.loaded])[0]), "planned": self.planned,
            "keep_fraction": selected / fwd if fwd else None,
            "mean_loss_all": lsa / fa if fa else None, "mean_loss_kept": lsk / fk if fk else None,
            "kept_per_class": [int(c) for c in per_class],
            "buffered": int(all_sum([len(self.loop.accumulator)])[0]),
            "nonfinite_losses": int(getattr(self.loop.selector, "nonfinite", 0)),
            "score_time_s": st.score_time_s, "select_time_s": st.select_time_s,
        }

    def state_dict(self) -> dict:
        return self.loop.state_dict()

    def load_state_dict(self, state: dict, device=None) -> None:
        self.loop.load_state_dict(state)
        acc = self.loop.accumulator
        if device is not None and acc.pieces:  # images/targets live on the training device, the rest on CPU
            acc.pieces = [type(p)(t.to(device) if k < 2 else t for k, t in enumerate(p)) for p in acc.pieces]


def _sample_ids(dataset) -> np.ndarray:
    """The full-set index of each position of ``dataset`` (identity where no subset is active)."""
    ids = getattr(dataset, "sample_ids", None)
    return np.arange(len(dataset), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)


def _positions_of(dataset, ids: np.ndarray) -> np.ndarray:
    """Positions in ``dataset`` of the full-set indices ``ids`` (the inverse of :func:`_sample_ids`)."""
    sample_ids = _sample_ids(dataset)
    lookup = np.full(int(sample_ids.max()) + 1 if len(sample_ids) else 0, -1, dtype=np.int64)
    lookup[sample_ids] = np.arange(len(sample_ids))
    return lookup[ids]


def _hard_labels(batch) -> torch.Tensor:
    """Class labels of a batch (argmax of mixup/cutmix soft targets), on the CPU, for class-aware selectors."""
    targets = batch[1]
    return (targets if targets.dim() == 1 else targets.argmax(dim=1)).cpu()


class ComposerReducer(_Reducer):
    """Composer-style SB: while active, train each batch's kept fraction at once (no accumulation)."""

    online = True
    name = "composer-sb"

    def __init__(self, selector, score_fn, epochs: int, labels: np.ndarray, num_classes: int):
        super().__init__()
        self.selector, self.score_fn, self.epochs = selector, score_fn, epochs
        self.num_batches = None  # forward batches per epoch (training progress); set by train_one_epoch
        self.labels, self.num_classes = labels, num_classes

    def batches(self, loader, epoch, last):
        nb = self.num_batches or (len(loader) if hasattr(loader, "__len__") else 0)
        if not nb:
            raise ValueError("composer-sb needs the number of batches per epoch: set reducer.num_batches")
        self.stats = {"forward_samples": 0, "samples_scored": 0, "samples_selected": 0}
        self.sel = {"forward": 0, "selected": 0}
        kept_all = []
        for i, batch in enumerate(loader):
            n = len(batch[0])
            self.stats["forward_samples"] += n
            self.sel["forward"] += n
            progress = (epoch + i / nb) / self.epochs
            if self.selector.is_active(progress, i):
                losses = self.score_fn(batch)
                self.stats["samples_scored"] += n
                keep = self.selector.select(losses).nonzero().flatten()
                batch = tuple(t[keep.to(t.device)] for t in batch)
            self.stats["samples_selected"] += len(batch[0])
            self.sel["selected"] += len(batch[0])
            kept_all.append(batch[-1])
            yield batch, None
        kept = torch.cat(kept_all).numpy() if kept_all else np.zeros(0, np.int64)
        self._per_class = np.bincount(self.labels[kept], minlength=self.num_classes)

    def epoch_record(self) -> dict:
        fwd, scored, selected = all_sum([self.stats["forward_samples"], self.stats["samples_scored"],
                                          self.stats["samples_selected"]])
        return {"forward_samples": int(fwd), "samples_scored": int(scored), "samples_selected": int(selected),
                "keep_fraction": selected / fwd if fwd else None,
                "kept_per_class": [int(c) for c in all_sum(self._per_class)]}

    def state_dict(self) -> dict:
        return {"selector": self.selector.state_dict()}

    def load_state_dict(self, state: dict, device=None) -> None:
        self.selector.load_state_dict(state["selector"])


class InfoBatchReducer(_Reducer):
    """InfoBatch: each epoch's visiting plan from the pruner; loss weights 1/(1−r) on kept well-learned samples;
    the training forward's losses (all ranks') update the scores."""

    name = "infobatch"

    def __init__(self, pruner):
        super().__init__()
        self.pruner = pruner
        self.pruned = 0

    def prepare_epoch(self, epoch, sampler, last=False):
        plan = self.pruner.plan(epoch)
        self.pruned = self.pruner.num_samples - len(plan)
        sampler.set_plan(plan)

    def batches(self, loader, epoch, last):
        self.stats = {"forward_samples": 0, "samples_scored": 0, "pruned": int(self.pruned)}
        self.sel = {"forward": 0, "selected": 0}
        for batch in loader:
            n = len(batch[0])
            self.stats["forward_samples"] += n
            self.sel["forward"] += n
            self.sel["selected"] += n
            yield batch, self.pruner.loss_weights(batch[-1]).to(batch[0].device)

    def after_step(self, indices, losses):
        all_idx = ddp_ops.gather_1d(indices.reshape(-1))
        all_loss = ddp_ops.gather_losses(losses.detach().float().reshape(-1).cpu())
        self.pruner.update(all_idx, all_loss)

    def epoch_record(self) -> dict:
        fwd = all_sum([self.stats["forward_samples"]])[0]
        return {"forward_samples": int(fwd), "samples_scored": 0, "pruned_samples": self.stats["pruned"],
                "keep_fraction": 1 - self.stats["pruned"] / self.pruner.num_samples}

    def state_dict(self) -> dict:
        return {"pruner": self.pruner.state_dict()}

    def load_state_dict(self, state: dict, device=None) -> None:
        self.pruner.load_state_dict(state["pruner"])


class RS2Reducer(FullReducer):
    """RS2: each epoch the sampler visits that epoch's fresh random subset (every sample once before any twice)."""

    name = "rs2"

    def __init__(self, subsets):
        super().__init__()
        self.subsets = subsets

    def prepare_epoch(self, epoch, sampler, last=False):
        sampler.set_plan(self.subsets.plan(epoch))

    def epoch_record(self) -> dict:
        record = super().epoch_record()
        return {**record, "keep_fraction": self.subsets.per_epoch / self.subsets.num_samples}


def check_supported(cfg: ReduceConfig) -> None:
    """Refuse, before any work, the combinations this loop cannot run."""
    if cfg.method in ("infobatch", "rs2") and cfg.ids is not None:
        raise UsageError(f"--reduce {cfg.method} draws from the whole training set each epoch; combining it with "
                         "IDS is not supported (use one of them)")


def build_reducer(cfg: ReduceConfig, score_fn, batch_size: int, epochs: int, dataset, rank: int = 0,
                  collate_fn=None, device=None) -> _Reducer:
    """The reducer for this run's ``--reduce`` / ``--adonis`` choice (offline methods train as full data).
    ``collate_fn`` and ``device`` (the train loader's) let online selection load samples by index."""
    labels = full_labels(dataset)
    ncls = len(dataset.classes)
    if cfg.adonis is not None or cfg.method in ("sb", "stale-sb", "random-keep"):
        rho = (cfg.adonis.rho if cfg.adonis is not None else None) or batch_size
        name = "adonis" if cfg.adonis is not None else cfg.method
        reuse = cfg.adonis is not None and cfg.adonis.reuse_train_loss
        return OnlineReducer(cfg.online_selector(rank, epochs=epochs), score_fn, rho, name, labels, ncls,
                             batch_size=batch_size, plan=not cfg.load_all, reuse_train_losses=reuse,
                             collate_fn=collate_fn, device=device)
    if cfg.method == "composer-sb":
        return ComposerReducer(cfg.online_selector(rank, epochs=epochs), score_fn, epochs, labels, ncls)
    if cfg.method == "infobatch":
        check_supported(cfg)
        from ..infobatch import InfoBatchPruner

        return InfoBatchReducer(InfoBatchPruner(len(dataset), epochs, ratio=cfg.infobatch_ratio,
                                                delta=cfg.infobatch_delta, seed=cfg.seed))
    if cfg.method == "rs2":
        check_supported(cfg)
        from ..rs2 import RS2Subsets

        return RS2Reducer(RS2Subsets(len(dataset), cfg.rs2_fraction, seed=cfg.seed))
    red = FullReducer()
    red.name = cfg.method if cfg.ids is None else "ids"
    return red


# ===================================================================================================== train
def train_one_epoch(model, optimizer, loader, device, epoch: int, args, reducer: _Reducer, scaler=None,
                    model_ema=None, counts: Optional[SelectionCounts] = None, last: bool = False,
                    show_progress: bool = True) -> dict:
    """One epoch of training: the reducer decides which samples each optimizer step sees.

    Returns this rank's accounting: ``train_time_s`` (wall time of the loop: loading, scoring, selection and
    steps), ``optimizer_steps``, ``samples_backprop``, ``train_loss`` (mean per-sample loss of the trained
    samples, after InfoBatch weights). Console: a tqdm bar over the forward batches with the selection rate.
    """
    from tqdm import tqdm

    model.train()
    sync = device.type == "cuda"
    if sync:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    reducer.prepare_epoch(epoch, loader.sampler, last)  # planning the epoch is part of its cost
    bar = tqdm(loader, desc=f"Epoch {epoch}", total=len(loader), disable=not show_progress, dynamic_ncols=True,
               leave=False, mininterval=1.0)
    steps, backprop, loss_sum = 0, 0, 0.0
    if hasattr(reducer, "num_batches"):
        reducer.num_batches = len(loader)
    for (images, targets, indices), weights in reducer.batches(to_device(bar, device), epoch, last):
        with _autocast(device, args.amp):
            losses = per_sample_loss(model(images), targets, args.label_smoothing)
            loss = (losses * weights).mean() if weights is not None else losses.mean()
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if args.clip_grad_norm is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if args.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
            optimizer.step()
        steps += 1
        reducer.after_step(indices, losses)
        if model_ema is not None and steps % args.model_ema_steps == 0:
            model_ema.update_parameters(model)
            if epoch < args.lr_warmup_epochs:
                model_ema.n_averaged.fill_(0)
        n = len(indices)
        backprop += n
        loss_sum += float(loss.detach()) * n
        if counts is not None:
            counts.add(indices)
        if show_progress and steps % max(1, args.print_freq) == 0:
            rate = reducer.selection_rate()
            bar.set_postfix(loss=f"{loss_sum / backprop:.4f}", sel=f"{rate:.2f}" if rate is not None else "-",
                            lr=f"{optimizer.param_groups[0]['lr']:.4g}", refresh=False)
    if sync:
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    bar.close()
    return {"train_time_s": elapsed, "optimizer_steps": steps, "samples_backprop": backprop,
            "train_loss_sum": loss_sum}


def evaluate(model, loader, device, num_classes: int, label_smoothing: float = 0.0, amp: bool = False) -> dict:
    """Top-1 (and top-5 with ≥ 5 classes) accuracy in % and the mean loss, summed over all ranks."""
    model.eval()
    k = 5 if num_classes >= 5 else None
    correct1 = correct5 = total = 0
    loss_sum = 0.0
    with torch.inference_mode():
        for batch in loader:
            images = batch[0].to(device, non_blocking=True)
            targets = batch[1].to(device, non_blocking=True)
            with _autocast(device, amp):
                out = model(images)
            loss_sum += float(F.cross_entropy(out.float(), targets, reduction="sum", label_smoothing=label_smoothing))
            top = out.topk(k or 1, dim=1).indices
            hit = top == targets[:, None]
            correct1 += int(hit[:, 0].sum())
            if k:
                correct5 += int(hit.any(dim=1).sum())
            total += len(targets)
    c1, c5, n, ls = all_sum([correct1, correct5, total, loss_sum])
    out = {"top1": 100.0 * c1 / n if n else None, "val_loss": ls / n if n else None}
    if k:
        out["top5"] = 100.0 * c5 / n if n else None
    return out


def job_epoch_record(stats: dict, reducer: _Reducer) -> dict:
    """One epoch's accounting for the whole job from every rank's :func:`train_one_epoch` result: the slowest
    rank's loop time, optimizer steps (equal on all ranks; each rank's listed under DDP), samples summed."""
    steps = [int(s) for s in gather_objects(stats["optimizer_steps"])]
    train_time = max(gather_objects(stats["train_time_s"]))
    backprop, loss_sum = all_sum([stats["samples_backprop"], stats["train_loss_sum"]])
    record = {"train_time_s": train_time, "optimizer_steps": steps[0], "samples_backprop": int(backprop),
              "train_loss": loss_sum / backprop if backprop else None, **reducer.epoch_record()}
    if len(steps) > 1:
        record["optimizer_steps_per_rank"] = steps
    return record


# ================================================================================================ checkpoints
def reducer_states(reducer: _Reducer) -> list:
    """Every rank's reducer state (each rank holds its own buffer and RNG), gathered on all ranks."""
    return gather_objects(reducer.state_dict())


def save_checkpoint(state: dict, path) -> None:
    """``torch.save`` to a temp file, then rename: an interrupted save never leaves a broken checkpoint."""
    write_torch(path, state)


def load_checkpoint(path) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain containers only:
    ``weights_only=True``, so a checkpoint file cannot run code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {path}: no such checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError and friends
        raise UsageError(f"--resume {path}: not a checkpoint of this trainer ({exc})") from None


def restore_reducer(reducer: _Reducer, states: list, rank: int, world_size: int, device) -> None:
    """Load this rank's reducer state; a different world size cannot resume exactly (warns, uses rank 0's)."""
    if not states:
        return
    if len(states) != world_size:
        import warnings

        warnings.warn(f"checkpoint was written by {len(states)} rank(s), this run has {world_size}: the selector "
                      "state of rank 0 is used everywhere, so selections will differ from an uninterrupted run",
                      RuntimeWarning)
        state = states[0]
    else:
        state = states[rank]
    reducer.load_state_dict(state, device=device)


def rng_state() -> dict:
    """The torch RNG state at the end of an epoch, for the record (every epoch reseeds: :func:`seed_epoch`)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed every RNG from (seed, epoch, rank) at the top of an epoch: augmentation, dropout and loader workers
    then depend on nothing but the epoch, so a resumed run repeats an uninterrupted one exactly."""
    import random

    s = (seed * 1_000_003 + epoch * 1009 + rank) % (2**31)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
