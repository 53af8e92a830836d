"""What ``datareduce ids`` does: offline subset selection (IDS, SSP, RPC, RPD) over an ImageFolder tree.

:func:`run` validates every parameter first (nothing is read or embedded for a bad α), lists the dataset,
embeds it when the method needs embeddings (cached on disk, keyed by the dataset listing and the extractor),
selects, and returns the manifest with a per-class summary and the time spent. It prints nothing; the
console face (:mod:`datareduce.cli`) shows the progress bar and the tables. The manifest is built by
:func:`datareduce.offline.build_manifest`, the function the classification trainer builds its own with, so a
manifest written here is exactly the one ``trainers/classify.py --ids-manifest`` accepts for that data.

Sample ids in the manifest are the image paths relative to the folder that holds the class folders
(``<class>/<file>``): for ``DIR/train/<class>/*`` that folder is ``DIR/train``, for ``DIR/<class>/*`` it is
``DIR`` — the same ids the trainer checks the manifest's fingerprint against.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from . import manifest as manifest_mod
from ._validate import UsageError, check_choice, check_number
from .atomic import check_writable_dir
from .config import OFFLINE, EmbedConfig, IDSConfig, OfflineConfig, ReduceConfig

METHODS = ("ids",) + OFFLINE  # ids, ssp, rpc, rpd
NEEDS_EMBEDDINGS = ("ids", "ssp")


@dataclass
class SelectionResult:
    """Everything ``datareduce ids`` reports: the manifest, where it went, per-class counts and the time spent."""

    manifest: dict
    out: Optional[Path]
    image_root: Path
    class_names: List[str]
    totals: List[int]  # samples per class in the full dataset
    kept: List[List[int]]  # per subset (γ: easy, then hard), kept samples per class
    subset_labels: List[str]  # e.g. "easy (epoch 0+)", "hard (epoch 120+)"
    embed_time_s: float = 0.0
    select_time_s: float = 0.0
    total_time_s: float = 0.0
    extractor: Optional[str] = None
    cache_hit: Optional[bool] = None
    notes: List[str] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return int(sum(self.totals))


def config_for(method: str = "ids", alpha: float = 0.8, mode: str = "easy", gamma: Optional[int] = None,
               prototypes: int = 1, extractor: str = "efficientnet-lite0", weights: Optional[str] = None,
               image_size: Optional[int] = None, cache_dir: Optional[str] = None, seed: int = 0) -> ReduceConfig:
    """The validated :class:`~datareduce.config.ReduceConfig` for a selection (raises ``UsageError`` with the
    parameter's name and allowed range, before anything is read)."""
    check_choice("method", method, METHODS)
    check_number("alpha", alpha, low=0, high=1, low_open=True)
    check_number("prototypes", prototypes, low=1, integer=True)
    if gamma is not None:
        check_number("gamma", gamma, low=0, integer=True)
    embed = EmbedConfig(extractor=extractor, weights=weights, image_size=image_size,
                        cache_dir=None if cache_dir is None else str(cache_dir))
    if method == "ids":
        ids = IDSConfig(alpha=alpha, mode=mode, gamma=gamma, prototypes=prototypes, seed=seed)
        return ReduceConfig(method="full", ids=ids, embed=embed, seed=seed)
    if gamma is not None or prototypes != 1 or mode != "easy":
        raise UsageError(f"--gamma, --prototypes and --mode apply to --method ids only, not to {method}")
    return ReduceConfig(method=method, offline=OfflineConfig(alpha), embed=embed, seed=seed)


def image_folder_root(data_path) -> Path:
    """The folder holding the class folders: ``DIR/train`` when it exists, else ``DIR`` itself."""
    root = Path(data_path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--data-path {root} does not exist or is not a folder")
    train = root / "train"
    return train if train.is_dir() else root


def open_image_folder(data_path, check_images: bool = False, skip_bad_images: bool = False):
    """An :class:`~datareduce.datasets.IndexedImageFolder` (no transform) over ``DIR/train`` or ``DIR``.

    ``check_images``: every image file's header is checked first (see
    :func:`~datareduce.datasets.check_image_files`): an unreadable one raises ``BadImageError`` naming it, or with
    ``skip_bad_images`` is left out (they are in the dataset's ``skipped``: ``(path, reason)``)."""
    from .datasets import IndexedImageFolder, check_image_files

    root = image_folder_root(data_path)
    try:
        dataset = IndexedImageFolder(root)
    except (FileNotFoundError, RuntimeError) as e:  # torchvision: no class folders / no images in them
        raise FileNotFoundError(
            f"no ImageFolder dataset under {Path(data_path)}: expected {Path(data_path)}/train/<class>/<image> or "
            f"{Path(data_path)}/<class>/<image> ({e})") from None
    dataset.skipped = check_image_files([dataset], skip=skip_bad_images) if check_images else []
    return dataset


def run(data_path, out=None, method: str = "ids", alpha: float = 0.8, mode: str = "easy",
        gamma: Optional[int] = None, prototypes: int = 1, extractor: str = "efficientnet-lite0",
        weights: Optional[str] = None, image_size: Optional[int] = EmbedConfig.image_size, cache_dir=None,
        seed: int = 0, batch_size: int = 64, workers: int = 0, device: Optional[str] = None,
        progress: Optional[Callable[[int, int], None]] = None, skip_bad_images: bool = False) -> SelectionResult:
    """Select a subset of the ImageFolder tree at ``data_path`` and (with ``out``) write its manifest atomically.

    ``progress(done, total)`` is called while embedding (once with ``(N, N)`` when the embeddings are cached).
    Every image file is checked before any is embedded: an unreadable one raises ``BadImageError`` naming it, or
    with ``skip_bad_images`` is left out (a note says which), as ``trainers/classify.py --skip-bad-images`` does,
    so the manifest matches that run's listing.
    """
    from . import offline
    from .datasets import skipped_message
    from .paths import embeddings_dir

    start = time.perf_counter()
    cfg = config_for(method, alpha, mode, gamma, prototypes, extractor, weights, image_size, cache_dir, seed)
    if out is not None:
        out = Path(out).expanduser()
        if out.is_dir():
            raise IsADirectoryError(f"--out {out} is a folder: give the manifest's file name, e.g. {out}/manifest.json")
        check_writable_dir(out.parent, f"--out {out}")  # before the embedding, not after it
    image_folder_root(data_path)  # a missing folder is reported before the extractor is built
    ex = None
    if method in NEEDS_EMBEDDINGS:  # built (weights found and checked) before the dataset is listed
        import torch

        from .embed import build_extractor

        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        ex = build_extractor(cfg.embed.extractor, weights=cfg.embed.weights, device=dev,
                             image_size=cfg.embed.image_size)
    dataset = open_image_folder(data_path, check_images=True, skip_bad_images=skip_bad_images)
    keys, labels, names = dataset.sample_keys(), np.asarray(dataset.targets, dtype=np.int64), list(dataset.classes)
    cache_hit, emb, record, info = None, None, None, {}
    if ex is not None:
        from .embed import cache_path

        cache = Path(cfg.embed.cache_dir).expanduser() if cfg.embed.cache_dir else embeddings_dir()
        cache_hit = cache_path(cache, offline.embedding_fingerprint(keys, dataset.root), ex).is_file()
        emb, info["embed_time_s"] = offline.embed_samples([p for p, _ in dataset.samples], keys, dataset.root, ex,
                                                          cfg.embed, progress=progress, batch_size=batch_size,
                                                          workers=workers)
        record = offline.extractor_record(cfg.embed, ex)
    t0 = time.perf_counter()
    manifest = offline.build_manifest(cfg, keys, emb, labels, names, record)
    info["select_time_s"] = time.perf_counter() - t0
    if out is not None:
        manifest_mod.write(out, manifest)

    totals = np.bincount(labels, minlength=len(names)).tolist()
    kept, subset_labels = [], []
    for s in manifest["subsets"]:
        per = s.get("per_class", {})
        kept.append([int(per.get(c, 0)) for c in names])
        what = s.get("mode") or method
        subset_labels.append(f"{what} (epoch {s['from_epoch']}+)" if len(manifest["subsets"]) > 1 else what)
    return SelectionResult(
        manifest=manifest, out=out, image_root=Path(dataset.root), class_names=names, totals=totals, kept=kept,
        subset_labels=subset_labels, embed_time_s=info.get("embed_time_s", 0.0),
        select_time_s=info.get("select_time_s", 0.0), total_time_s=time.perf_counter() - start,
        extractor=None if ex is None else ex.key, cache_hit=cache_hit,
        notes=[skipped_message(dataset.skipped, len(dataset) + len(dataset.skipped))] if dataset.skipped else [])
