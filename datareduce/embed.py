"""Embed a dataset with a feature extractor, once, and cache the result on disk.

:func:`embed` runs an :class:`~datareduce.extractors.Extractor` over image files or a dataset of PIL images and
returns an (N, D) float32 array, row i for image i. With ``cache_dir`` and ``fingerprint`` (a string naming
the dataset listing, e.g. :func:`datareduce.manifest.dataset_fingerprint`) the array is stored as
``<cache_dir>/<sha256(fingerprint, extractor.key)>.npy`` (written atomically, with a ``.json`` note saying
what it holds) and read back on the next call, so a second selection with another α or mode takes seconds.

:func:`embed_shard` is the same under ``torch.distributed``: each rank embeds images ``rank::world`` and the
rows are gathered on every rank. Neither prints anything: pass ``progress(done, total)`` to show progress.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ._validate import UsageError
from .atomic import write_npy, write_text
from .extractors import Extractor, build_extractor

__all__ = ["embed", "embed_shard", "cache_path", "build_extractor", "Extractor", "ImageList"]

Progress = Optional[Callable[[int, int], None]]

# On a CPU one forward pass takes at most this many pixels (4 images at 224 px, 16 at 112, 49 at 64, 196 at
# 32): activations that fit the caches. Measured here (AMD EPYC, 1 thread, efficientnet-lite0, images per
# CPU-second): 224 px 54 in fours vs 31 in sixteens; 112 px 185 in sixteens vs 118 in 64s; 64 px ~525 in
# 32-64s vs 330 in 128s; 32 px ~1300 from 64 up.
CPU_PIXELS_PER_FORWARD = 4 * 224 * 224


class ImageList(Dataset):
    """Images ``images[i]`` for i in ``indices`` (default all), each passed through ``transform``.

    An item of ``images`` is an image file path, a PIL image, a uint8 array, or a tuple whose first element is
    one of those (e.g. the ``(image, label)`` of an ``ImageFolder`` built without a transform).
    """

    def __init__(self, images, transform: Callable, indices: Optional[Sequence[int]] = None):
        self.images = images
        self.transform = transform
        self.indices = None if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.images) if self.indices is None else len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        j = i if self.indices is None else self.indices[i]
        item = self.images[j]
        if isinstance(item, (tuple, list)):
            item = item[0]
        if isinstance(item, (str, os.PathLike)):
            from PIL import Image

            from .datasets import BadImageError, _decode_errors, _reason

            try:
                with Image.open(item) as img:
                    img.load()
                    return self.transform(img)
            except _decode_errors() as e:  # one line naming the file, not PIL's bare error
                raise BadImageError(f"image {item} cannot be decoded ({_reason(item, e)}): replace or remove "
                                    "this file") from None
        if isinstance(item, torch.Tensor):
            raise TypeError(
                f"item {j} is already a tensor: embed() applies the extractor's own preprocessing, so give it "
                "the image file paths or a dataset that returns PIL images (e.g. ImageFolder(root) without a "
                "transform)"
            )
        return self.transform(item)


def cache_path(cache_dir, fingerprint: str, extractor: Extractor) -> Path:
    """Where the embeddings of the dataset ``fingerprint`` by ``extractor`` are cached."""
    digest = hashlib.sha256(f"{fingerprint}\n{extractor.key}".encode("utf-8")).hexdigest()[:32]
    return Path(cache_dir) / f"{digest}.npy"


def _read_cache(path: Path, n: int, dim: int) -> Optional[np.ndarray]:
    """The cached array if it is readable and has the expected shape and dtype; else None (recompute)."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if arr.dtype != np.float32 or arr.shape != (n, dim):
        return None
    return arr


def _write_cache(path: Path, arr: np.ndarray, fingerprint: str, extractor: Extractor) -> None:
    """Write ``arr`` to ``path`` atomically (temp file in the same folder, fsync, rename) plus a .json note."""
    path.parent.mkdir(parents=True, exist_ok=True)
    note = {"fingerprint": fingerprint, "extractor": extractor.name, "key": extractor.key,
            "shape": list(arr.shape), "dtype": str(arr.dtype)}
    write_text(path.with_suffix(".json"), json.dumps(note, sort_keys=True, indent=1) + "\n")
    write_npy(path, arr)


def _as_extractor(extractor, device) -> Extractor:
    if isinstance(extractor, Extractor):
        return extractor
    if isinstance(extractor, (str, os.PathLike, nn.Module)):
        return build_extractor(extractor, device=device)
    raise TypeError(f"extractor must be an Extractor (see build_extractor), a name or an nn.Module, "
                    f"got {type(extractor).__name__}")


def _check_args(cache_dir, fingerprint, batch_size, num_workers):
    if cache_dir is not None and fingerprint is None:
        raise ValueError("cache_dir needs a fingerprint of the dataset listing "
                         "(datareduce.manifest.dataset_fingerprint(ids)) to key the cache")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise TypeError(f"fingerprint must be a string, got {type(fingerprint).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise UsageError(f"num_workers must be a non-negative integer, got {num_workers!r}")


def _run(images, ex: Extractor, indices, batch_size: int, num_workers: int, progress: Progress,
         device) -> np.ndarray:
    """Embed ``images[indices]`` (all when None) in order, in eval mode and inference mode."""
    module = ex.module
    if device is not None and torch.device(device) != ex.device:
        module.to(torch.device(device))
    dev = ex.device
    data = ImageList(images, ex.transform, indices)
    total = len(data)
    out = np.empty((total, ex.dim), dtype=np.float32)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=dev.type == "cuda", drop_last=False)
    was_training = module.training
    module.eval()
    done = 0
    try:
        # cuDNN autotuning may pick different kernels run to run; pin the choice so the bytes repeat.
        with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
            for batch in loader:
                chunk = batch.shape[0]
                if dev.type == "cpu":  # big CPU batches spill out of cache: forward a few images at a time
                    chunk = max(1, min(chunk, CPU_PIXELS_PER_FORWARD // (batch.shape[2] * batch.shape[3])))
                feats = torch.cat([ex(part.to(dev, non_blocking=True)) for part in batch.split(chunk)])
                if feats.shape != (batch.shape[0], ex.dim):
                    raise RuntimeError(f"extractor {ex.name} returned features of shape {tuple(feats.shape)} "
                                       f"for a batch of {batch.shape[0]}; expected (N, {ex.dim})")
                out[done:done + batch.shape[0]] = feats.float().cpu().numpy()
                done += batch.shape[0]
                if progress is not None:
                    progress(done, total)
    finally:
        module.train(was_training)
    if not np.isfinite(out).all():
        raise FloatingPointError(f"extractor {ex.name} produced NaN or inf features")
    return out


def embed(
    images,
    extractor: Union[Extractor, str, nn.Module],
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    fingerprint: Optional[str] = None,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: Progress = None,
    device: Optional[Union[str, torch.device]] = None,
) -> np.ndarray:
    """Features of every image, an (N, D) float32 array in the order of ``images``.

    ``images``: a sequence of image file paths, or a dataset returning PIL images or ``(PIL image, label)``.
    ``extractor``: from :func:`~datareduce.extractors.build_extractor` (a name or module is built with
    defaults). ``cache_dir`` + ``fingerprint``: reuse / store the array (see the module docstring).
    ``progress(done, total)`` is called after each batch (once with ``(N, N)`` on a cache hit).
    ``device``: where to run; None keeps the extractor where it is (a different device moves its module).
    The same inputs give byte-identical arrays on the same machine and thread count.
    """
    _check_args(cache_dir, fingerprint, batch_size, num_workers)
    ex = _as_extractor(extractor, device)
    n = len(images)
    path = cache_path(cache_dir, fingerprint, ex) if cache_dir is not None else None
    if path is not None:
        cached = _read_cache(path, n, ex.dim)
        if cached is not None:
            if progress is not None:
                progress(n, n)
            return cached
    out = _run(images, ex, None, batch_size, num_workers, progress, device)
    if path is not None:
        _write_cache(path, out, fingerprint, ex)
    return out


def embed_shard(
    images,
    extractor: Union[Extractor, str, nn.Module],
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    fingerprint: Optional[str] = None,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: Progress = None,
    device: Optional[Union[str, torch.device]] = None,
) -> np.ndarray:
    """:func:`embed` split over the ``torch.distributed`` ranks; every rank returns the full (N, D) array.

    Rank r embeds images r, r+world, r+2·world, …; the rows are gathered with ``all_gather_object`` and put
    back in dataset order. Rank 0 writes the cache. ``progress`` counts this rank's images. Without an
    initialised process group this is exactly :func:`embed`.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return embed(images, extractor, cache_dir, fingerprint, batch_size, num_workers, progress, device)
    _check_args(cache_dir, fingerprint, batch_size, num_workers)
    ex = _as_extractor(extractor, device)
    rank, world = dist.get_rank(), dist.get_world_size()
    n = len(images)
    path = cache_path(cache_dir, fingerprint, ex) if cache_dir is not None else None
    cached = _read_cache(path, n, ex.dim) if path is not None else None
    hits = [None] * world
    dist.all_gather_object(hits, cached is not None)
    if all(hits):
        if progress is not None:
            progress(n, n)
        return cached
    indices = list(range(rank, n, world))
    part = _run(images, ex, indices, batch_size, num_workers, progress, device)
    parts = [None] * world
    dist.all_gather_object(parts, part)
    out = np.empty((n, ex.dim), dtype=np.float32)
    for r, p in enumerate(parts):
        out[r::world] = p
    if path is not None and rank == 0:
        _write_cache(path, out, fingerprint, ex)
    dist.barrier()
    return out
