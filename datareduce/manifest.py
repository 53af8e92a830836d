"""The IDS manifest: which samples were kept, by what method and parameters, from which exact dataset.

A manifest is canonical JSON (sorted keys, fixed layout, no timestamps), so the same inputs and seed give the
same bytes. It carries a fingerprint of the dataset listing; a trainer given a manifest made from another
dataset refuses it (:func:`verify`).
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from ._validate import UsageError
from .atomic import write_text

FORMAT = "datareduce.manifest/1"


class ManifestMismatch(UsageError):
    """A manifest that does not belong to the dataset it is used with."""


def dataset_fingerprint(ids) -> str:
    """A stable fingerprint of a dataset listing: sha256 over its sample ids (relative paths, in order)."""
    h = hashlib.sha256()
    for i in ids:
        h.update(str(i).encode("utf-8"))
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


def subset(kept, ids, labels=None, class_names=None, mode=None, from_epoch=0) -> dict:
    """One kept subset: the ids (in dataset order), per-class counts, and when it starts to apply."""
    kept = [int(k) for k in kept]
    entry = {"from_epoch": int(from_epoch), "mode": mode, "num_kept": len(kept), "kept": [str(ids[k]) for k in kept]}
    if labels is not None:
        names = (lambda c: str(class_names[c])) if class_names is not None else str
        entry["per_class"] = dict(sorted(Counter(names(labels[k]) for k in kept).items()))
    return entry


def make(ids, subsets, method: str, params: dict, extractor=None) -> dict:
    """Assemble a manifest dict from the dataset's ``ids`` and one or more :func:`subset` entries."""
    if len(ids) == 0:
        raise ValueError("the dataset is empty: a manifest needs at least one sample")
    return {
        "format": FORMAT,
        "method": method,
        "params": params,
        "extractor": extractor,
        "dataset": {"fingerprint": dataset_fingerprint(ids), "num_samples": len(ids)},
        "subsets": sorted(subsets, key=lambda s: s["from_epoch"]),
    }


def dumps(manifest: dict) -> str:
    """Canonical text of a manifest (byte-identical for identical content)."""
    return json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def write(path, manifest: dict) -> Path:
    """Write ``manifest`` atomically (never a half-written file)."""
    return write_text(path, dumps(manifest))


def read(path) -> dict:
    """Load and sanity-check a manifest file; clear errors for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"manifest {path} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UsageError(f"{path} is not a datareduce manifest (expected format {FORMAT!r})")
    return manifest


def verify(manifest: dict, ids) -> None:
    """Refuse a manifest whose dataset fingerprint differs from the listing ``ids`` it is applied to."""
    expected = manifest["dataset"]["fingerprint"]
    actual = dataset_fingerprint(ids)
    if expected != actual:
        raise ManifestMismatch(
            f"manifest was made from another dataset: its fingerprint {expected} "
            f"({manifest['dataset']['num_samples']} samples) differs from this dataset's {actual} ({len(ids)} "
            "samples). Re-run the selection on this dataset.")


def kept_indices(manifest: dict, ids, epoch: int = 0):
    """Indices (into ``ids``) of the subset that applies in ``epoch``, after verifying the fingerprint."""
    verify(manifest, ids)
    current = [s for s in manifest["subsets"] if s["from_epoch"] <= epoch][-1]
    position = {str(i): n for n, i in enumerate(ids)}
    return sorted(position[k] for k in current["kept"])
