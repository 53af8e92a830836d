"""The offline subset(s) a run trains on: the manifest of a classification training set, read and checked, or built.

A manifest lists the kept sample ids of each subset (IDS, SSP, RPC, RPD; two with the γ switch); it is only ever
used for the exact dataset listing it was made from. The reduction session puts each epoch's subset in place
(:class:`datareduce.session.SubsetSchedule`).
"""
from __future__ import annotations

import time
from typing import List

import torch

from ... import distributed
from ... import manifest as manifest_mod
from ... import offline
from ...config import ReduceConfig
from .training_set import full_labels, raw_images


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
