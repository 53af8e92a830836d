"""The offline subset(s) a run trains on: the manifest (read and checked, or built) and its per-epoch schedule.

A manifest lists the kept sample ids of each subset (IDS, SSP, RPC, RPD; two with the γ switch); it is only ever
used for the exact dataset listing it was made from. :class:`SubsetSchedule` puts each epoch's subset in place.
"""
from __future__ import annotations

import time
from typing import List, Optional

import numpy as np
import torch

from ... import distributed
from ... import manifest as manifest_mod
from ... import offline
from ...config import ReduceConfig
from .training_set import full_labels, keep_samples, raw_images


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
    from ...embed import build_extractor

    return build_extractor(cfg.embed.extractor, weights=cfg.embed.weights, device=device,
                           image_size=cfg.embed.image_size)


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
    if distributed.rank() == 0:
        made = offline.build_manifest(cfg, keys, emb, full_labels(dataset), list(dataset.classes), record)
    made = distributed.broadcast_object(made)
    info["select_time_s"] = time.perf_counter() - t0
    return made, info


class SubsetSchedule:
    """Which full-set positions the training set holds in each epoch, from a manifest (γ switch included)."""

    def __init__(self, manifest: Optional[dict], dataset):
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
