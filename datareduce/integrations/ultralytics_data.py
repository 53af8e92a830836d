"""Data glue for Ultralytics: restrict a built ``YOLODataset`` to IDS's kept images, and prepare data YAMLs."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def restrict_dataset(dataset, keep, cache=None):
    """Shrink ``dataset`` (a ``YOLODataset`` built without image caching) in place to the image paths in ``keep``.

    Images and labels are selected together by resolved file path (Ultralytics re-sorts ``im_files`` from its
    label cache, so positions mean nothing). Everything sized by the image count is rebuilt, so mosaic, label
    plots and samplers see only the subset. ``cache`` (``"ram"``/``"disk"``) then caches the kept images only.
    Raises ``ValueError`` for ``rect=True`` (its batch shapes are computed over the full set) and when a kept
    path is not in the dataset.
    """
    if dataset.rect:
        raise ValueError("IDS subsets need rect=False: rect batches are shaped over the full image list")
    if any(im is not None for im in dataset.ims):
        raise ValueError("build the dataset with cache=False and pass cache= here, so dropped images are never loaded")
    wanted = {os.path.realpath(p) for p in keep}
    index = [i for i, f in enumerate(dataset.im_files) if os.path.realpath(f) in wanted]
    if len(index) != len(wanted):
        present = {os.path.realpath(f) for f in dataset.im_files}
        missing = sorted(wanted - present)
        raise ValueError(f"{len(missing)} kept image(s) are not in the dataset (first: {missing[:3]}); "
                         "was the selection made for another dataset?")
    dataset.im_files = [dataset.im_files[i] for i in index]
    dataset.labels = [dataset.labels[i] for i in index]
    dataset.ni = len(index)
    dataset.npy_files = [Path(f).with_suffix(".npy") for f in dataset.im_files]
    dataset.ims, dataset.im_hw0, dataset.im_hw = [None] * dataset.ni, [None] * dataset.ni, [None] * dataset.ni
    dataset.buffer = []
    dataset.max_buffer_length = min((dataset.ni, dataset.batch_size * 8, 1000)) if dataset.augment else 0
    dataset.cache = cache.lower() if isinstance(cache, str) else "ram" if cache is True else None
    if (dataset.cache == "ram" and dataset.check_cache_ram()) or (dataset.cache == "disk" and dataset.check_cache_disk()):
        dataset.cache_images()
    return dataset


def resolve_data_yaml(data, out_dir) -> Path:
    """A copy of the data YAML ``data`` in ``out_dir`` whose ``path`` is absolute and which never downloads.

    Ultralytics resolves a relative ``path:`` against the current directory or its own datasets dir, not the
    YAML's folder (COCO128's ``path: .`` breaks), and runs a YAML's ``download:`` when images are missing. Here
    a relative root is taken from the YAML's folder, ``download`` is dropped, and missing files fail at once.
    """
    from ultralytics.utils import YAML

    src = Path(data).expanduser()
    if src.is_dir():
        src = src / "data.yaml"
    if not src.is_file():
        raise FileNotFoundError(f"data YAML {data} not found (datasets are never downloaded: give a local file, "
                                "a folder holding data.yaml, or --coco-json)")
    cfg = YAML.load(src)
    root = Path(cfg.get("path") or ".").expanduser()
    root = (root if root.is_absolute() else src.parent / root).resolve()
    cfg.update(path=str(root))
    cfg.pop("download", None)
    cfg.pop("yaml_file", None)
    for split in ("train", "val"):
        parts = cfg.get(split)
        if not parts:
            raise ValueError(f"data YAML {src} has no '{split}:' entry")
        for part in parts if isinstance(parts, list) else [parts]:
            if not (root / part).exists():
                raise FileNotFoundError(f"data YAML {src}: {split} images {root / part} not found")
    digest = hashlib.sha256(f"{src.resolve()}\n{sorted(cfg.items())}".encode()).hexdigest()[:12]
    out = Path(out_dir) / f"{src.stem}-{digest}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    YAML.save(out, cfg)
    return out
