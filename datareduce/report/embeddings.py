"""The embeddings an IDS manifest was made from (cached, or recomputed with the same extractor) and their 2-D PCA."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .._validate import UsageError
from ..extras import MissingExtra
from ..paths import embeddings_dir
from .runs import Run


def manifest_extractor_key(m: dict) -> Optional[str]:
    """The extractor key of a manifest (a string, or the ``key`` of a dict describing the extractor)."""
    ex = m.get("extractor")
    if isinstance(ex, dict):
        ex = ex.get("key")
    return ex if isinstance(ex, str) else None


def default_cache_dirs(run: Run, cache_dir=None) -> List[Path]:
    """Where to look for ``run``'s embeddings, in order: ``cache_dir``, the caches the run recorded, the default."""
    dirs = []
    if cache_dir is not None:
        dirs.append(Path(cache_dir).expanduser())
    args = run.config.get("args") if isinstance(run.config.get("args"), dict) else {}
    embed = (run.config.get("reduce") or {}).get("embed") if isinstance(run.config.get("reduce"), dict) else None
    ex = (run.manifest or {}).get("extractor")
    for d in (args.get("ids_cache_dir"), (embed or {}).get("cache_dir"), ex.get("cache_dir") if isinstance(ex, dict)
              else None):
        if d:
            dirs.append(Path(d).expanduser())
    dirs.append(embeddings_dir())  # every trainer's default
    seen, out = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def find_cached_embeddings(manifest: dict, dirs: Sequence[Path]) -> Optional[np.ndarray]:
    """The cached embeddings a manifest was made from (matched by dataset fingerprint and extractor key)."""
    key = manifest_extractor_key(manifest)
    if key is None:
        return None
    fp, n = manifest["dataset"]["fingerprint"], int(manifest["dataset"]["num_samples"])
    for d in dirs:
        if not d.is_dir():
            continue
        for note_path in sorted(d.glob("*.json")):
            try:
                note = json.loads(note_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(note, dict) or note.get("key") != key:
                continue
            if str(note.get("fingerprint", "")).split("|")[0] != fp:
                continue
            try:
                arr = np.load(note_path.with_suffix(".npy"), allow_pickle=False)
            except (OSError, ValueError, EOFError):
                continue
            if arr.ndim == 2 and arr.shape[0] == n and np.isfinite(arr).all():
                return arr
    return None


def _parse_key(key: str):
    """(extractor name, image size) from an extractor key ``extractor/1|NAME|weights=…|size=N|…``."""
    parts = key.split("|")
    if len(parts) < 3 or not parts[0].startswith("extractor/"):
        return None, None
    size = next((int(p[5:]) for p in parts if p.startswith("size=") and p[5:].isdigit()), None)
    return parts[1], size


def run_embeddings(run: Run, cache_dir=None, compute: bool = True, progress=None):
    """The embeddings of ``run``'s manifest: from the cache, or recomputed with the same extractor; else
    (None, reason)."""
    m = run.manifest
    dirs = default_cache_dirs(run, cache_dir)
    found = find_cached_embeddings(m, dirs)
    if found is not None:
        return found, None
    key = manifest_extractor_key(m)
    if key is None:
        return None, "the manifest names no feature extractor"
    if not compute:
        return None, f"no cached embeddings in {', '.join(map(str, dirs))} (recomputing was switched off)"
    if run.images is None:
        return None, "embeddings are not cached and the dataset is not available to recompute them"
    name, size = _parse_key(key)
    if name is None:
        return None, f"embeddings are not cached and the extractor key {key[:80]!r} cannot be parsed"
    from ..embed import build_extractor, embed

    try:
        ex = build_extractor(name, image_size=size)
    except (UsageError, FileNotFoundError, MissingExtra) as e:
        return None, f"embeddings are not cached and the extractor {name!r} cannot be rebuilt here ({e})"
    if ex.key != key:
        return None, (f"embeddings are not cached and the run's extractor ({key[:120]}…) used other weights or "
                      "preprocessing than can be rebuilt here; pass --cache-dir with the run's embedding cache")
    fingerprint = m["dataset"]["fingerprint"] + run.images.cache_suffix
    emb = embed(run.images.embed_inputs(), ex, cache_dir=dirs[0], fingerprint=fingerprint, progress=progress)
    return emb, None


def pca_2d(x: np.ndarray, max_fit: int = 10000, seed: int = 0) -> np.ndarray:
    """Every row of ``x`` projected on the first two principal components; signs fixed for repeatability.

    The components are fitted on at most ``max_fit`` rows (a seeded sample), on the smaller of the Gram and
    covariance matrices, or by randomized SVD when both are large."""
    x = np.asarray(x, dtype=np.float64)
    fit = x if len(x) <= max_fit else x[np.sort(np.random.default_rng(seed).permutation(len(x))[:max_fit])]
    mean = fit.mean(axis=0)
    xs = fit - mean
    n, d = xs.shape
    if n <= d:
        w, u = np.linalg.eigh(xs @ xs.T)
        top = np.argsort(w)[::-1][:2]
        comps = (u[:, top].T @ xs) / np.sqrt(np.clip(w[top], 1e-12, None))[:, None]
    elif d <= 3000:
        w, v = np.linalg.eigh(xs.T @ xs)
        comps = v[:, np.argsort(w)[::-1][:2]].T
    else:
        from sklearn.utils.extmath import randomized_svd

        comps = randomized_svd(xs, n_components=2, random_state=seed)[2]
    proj = (x - mean) @ comps.T
    if proj.shape[1] < 2:
        proj = np.hstack([proj, np.zeros((len(x), 2 - proj.shape[1]))])
    return proj * np.where(proj[np.abs(proj).argmax(axis=0), [0, 1]] < 0, -1.0, 1.0)
