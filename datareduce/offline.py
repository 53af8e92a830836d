"""Offline selection (IDS, SSP, RPC, RPD): a dataset's samples to the manifest of the subset(s) trained on.

One rule for every host (both trainers, both patches, ``datareduce ids``): how the embeddings are keyed in
the cache (the sample ids and the dataset's root), how the extractor is recorded, which subsets the γ switch
makes (the ``--ids-mode`` subset until epoch γ, the opposite one from γ on: easy then hard by default, paper
§3.2), and the manifest's fields. The host only says how to read its images and labels.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import baselines, ids, manifest
from ._validate import UsageError
from .config import EmbedConfig, IDSConfig, ReduceConfig
from .paths import embeddings_dir

OTHER_MODE = {"easy": "hard", "hard": "easy"}


def needs_embeddings(cfg: ReduceConfig) -> bool:
    """IDS and SSP select from image embeddings; RPC and RPD need none."""
    return cfg.ids is not None or cfg.method == "ssp"


def embedding_fingerprint(keys: Sequence[str], root) -> str:
    """The embedding cache's key for a dataset: its sample ids and its resolved root (the same relative
    listing under another root holds other images)."""
    return manifest.dataset_fingerprint(keys) + "|" + str(Path(root).resolve() if root else "")


def extractor_record(embed_cfg: EmbedConfig, extractor) -> dict:
    """How the embeddings were made, as the manifest records it: the settings and the extractor's key."""
    return {**asdict(embed_cfg), "key": extractor.key}


def embed_samples(images, keys: Sequence[str], root, extractor, embed_cfg: EmbedConfig, *, progress=None,
                  batch_size: int = 64, workers: int = 0, shard: bool = True) -> tuple:
    """``(embeddings, seconds)`` of every sample through the cache keyed by :func:`embedding_fingerprint`.
    With ``shard`` the work is split over the DDP ranks (every rank calls this and gets all rows); a host
    that builds its dataset on one rank at a time (Ultralytics) embeds unsharded."""
    from .embed import embed, embed_shard

    start = time.perf_counter()
    cache = Path(embed_cfg.cache_dir).expanduser() if embed_cfg.cache_dir else embeddings_dir()
    emb = (embed_shard if shard else embed)(images, extractor, cache_dir=cache,
                                            fingerprint=embedding_fingerprint(keys, root), batch_size=batch_size,
                                            num_workers=workers, progress=progress)
    return emb, time.perf_counter() - start


def subset_modes(c: IDSConfig) -> list:
    """``[(from_epoch, mode)]`` of the IDS subsets: the chosen mode, and with γ the other one from epoch γ."""
    if c.gamma is None:
        return [(0, c.mode)]
    return [(0, c.mode), (c.gamma, OTHER_MODE[c.mode])]


def build_manifest(cfg: ReduceConfig, keys: Sequence[str], embeddings: Optional[np.ndarray] = None,
                   labels: Optional[np.ndarray] = None, classes: Optional[Sequence[str]] = None,
                   extractor: Optional[dict] = None) -> dict:
    """The manifest of ``cfg``'s offline subset(s) of the samples ``keys``.

    ``embeddings`` (one row per key) for IDS and SSP; ``labels`` (class per sample) for per-class selection —
    without them (detection) IDS ranks by one dataset-wide prototype and RPC is refused; ``classes`` names the
    labels in the per-class counts; ``extractor`` is :func:`extractor_record`'s.
    """
    if needs_embeddings(cfg) and embeddings is None:
        raise ValueError(f"{'IDS' if cfg.ids is not None else cfg.method} selects from embeddings: none given")
    if cfg.ids is not None:
        c = cfg.ids
        subsets = [manifest.subset(ids.select(embeddings, labels, alpha=c.alpha, mode=mode, prototypes=c.prototypes,
                                              seed=c.seed), keys, labels, classes, mode=mode, from_epoch=start)
                   for start, mode in subset_modes(c)]
        params = {k: v for k, v in asdict(c).items() if k != "manifest"}
        return manifest.make(keys, subsets, "ids", params, extractor=extractor)
    if cfg.method == "ssp":
        kept = baselines.ssp(embeddings, labels, alpha=cfg.offline.alpha, seed=cfg.seed)
    elif cfg.method == "rpc":
        if labels is None:
            raise UsageError("--reduce rpc keeps a share of each class: it needs one class per sample "
                             "(use rpd for detection)")
        kept = baselines.random_per_class(labels, alpha=cfg.offline.alpha, seed=cfg.seed)
    elif cfg.method == "rpd":
        kept = baselines.random_per_dataset(len(keys), alpha=cfg.offline.alpha, seed=cfg.seed)
    else:
        raise ValueError(f"--reduce {cfg.method} is not an offline selection")
    return manifest.make(keys, [manifest.subset(kept, keys, labels, classes, mode=None, from_epoch=0)], cfg.method,
                         {"alpha": cfg.offline.alpha, "seed": cfg.seed}, extractor=extractor)
