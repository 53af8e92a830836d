"""Data glue for Ultralytics: restrict a built ``YOLODataset`` to IDS's kept images; prepare data YAMLs (a local
YAML made safe, the embedded digits set, COCO JSON converted)."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from .._validate import UsageError


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
            raise UsageError(f"data YAML {src} has no '{split}:' entry")
        for part in parts if isinstance(parts, list) else [parts]:
            if not (root / part).exists():
                raise FileNotFoundError(f"data YAML {src}: {split} images {root / part} not found")
    digest = hashlib.sha256(f"{src.resolve()}\n{sorted(cfg.items())}".encode()).hexdigest()[:12]
    out = Path(out_dir) / f"{src.stem}-{digest}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_yaml(out, cfg)
    return out


def _publish(tmp: Path, root: Path) -> None:
    """Move a finished build into place; a concurrent builder that finished first wins."""
    if root.exists():
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, root)


def make_digits_detection(cache_dir, train: int = 320, val: int = 80, size: int = 160, seed: int = 0) -> Path:
    """A small real-image detection set, built once into ``cache_dir``; returns its data YAML.

    Scikit-learn's bundled handwritten digits (1,797 real 8×8 scans, nothing downloaded) are upscaled and pasted,
    one to four per image, into distinct cells of a 3×3 grid on dark ``size``-pixel canvases, with YOLO labels
    (class = the digit). Train and val draw their digits from disjoint halves of the scans.
    """
    from sklearn.datasets import load_digits

    from ..extras import require

    cv2 = require("cv2", "yolo", "the embedded detection set", package="OpenCV (opencv-python-headless)")

    root = Path(cache_dir) / f"digits-detect-{train}-{val}-{size}-{seed}"
    if (root / "data.yaml").is_file():
        return root / "data.yaml"
    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.images))
    pools = {"train": order[: len(order) * 4 // 5], "val": order[len(order) * 4 // 5:]}
    cell = size // 3
    tmp = root.with_name(f".{root.name}.partial-{os.getpid()}")
    for split, count in (("train", train), ("val", val)):
        (tmp / "images" / split).mkdir(parents=True)
        (tmp / "labels" / split).mkdir(parents=True)
        for n in range(count):
            canvas = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
            lines = []
            for c in rng.choice(9, rng.integers(1, 5), replace=False):
                k = rng.choice(pools[split])
                side = int(rng.integers(cell // 2, cell + 1))
                x = c % 3 * cell + int(rng.integers(0, cell - side + 1))
                y = c // 3 * cell + int(rng.integers(0, cell - side + 1))
                glyph = cv2.resize((digits.images[k] * 255 / 16).astype(np.uint8), (side, side))
                region = canvas[y:y + side, x:x + side]
                np.maximum(region, glyph[..., None], out=region)
                lines.append(f"{digits.target[k]} {(x + side / 2) / size:.6f} {(y + side / 2) / size:.6f} "
                             f"{side / size:.6f} {side / size:.6f}")
            cv2.imwrite(str(tmp / "images" / split / f"{n:05d}.png"), canvas)
            (tmp / "labels" / split / f"{n:05d}.txt").write_text("\n".join(lines) + "\n")
    _save_yaml(tmp / "data.yaml", {"path": str(root), "train": "images/train", "val": "images/val",
                                   "names": {i: str(i) for i in range(10)}})
    _publish(tmp, root)
    return root / "data.yaml"


def coco_to_yolo(json_file, image_dir, cache_dir, val_json=None, val_image_dir=None) -> Path:
    """Convert COCO detection JSON (+ its image folder) to the YOLO layout in ``cache_dir``, once; returns the
    data YAML. Images are symlinked, crowd boxes skipped, categories numbered in ascending id order. Without
    ``val_json`` the training images double as the validation set (a warning says so)."""
    import contextlib
    import io
    import json
    import warnings

    from ..extras import require

    COCO = require("pycocotools.coco", "yolo", "--coco-json", package="pycocotools").COCO

    splits = {"train": (Path(json_file), Path(image_dir))}
    if val_json is None:
        warnings.warn("no validation JSON given: validating on the training images", stacklevel=2)
    splits["val"] = (Path(val_json), Path(val_image_dir or image_dir)) if val_json else splits["train"]
    for jf, folder in splits.values():
        if not jf.is_file():
            raise FileNotFoundError(f"COCO JSON {jf} not found")
        if not folder.is_dir():
            raise FileNotFoundError(f"COCO image folder {folder} not found")
    stamp = [(str(jf.resolve()), jf.stat().st_size, jf.stat().st_mtime_ns, str(d.resolve())) for jf, d in splits.values()]
    root = Path(cache_dir) / f"coco-{hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]}"
    if (root / "data.yaml").is_file():
        return root / "data.yaml"
    tmp = root.with_name(f".{root.name}.partial-{os.getpid()}")
    names = None
    for split, (jf, folder) in splits.items():
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco = COCO(str(jf))
        if names is None:
            ids = sorted(coco.cats)
            names = {i: coco.cats[c]["name"] for i, c in enumerate(ids)}
            number = {c: i for i, c in enumerate(ids)}
        (tmp / "images" / split).mkdir(parents=True)
        (tmp / "labels" / split).mkdir(parents=True)
        for image in coco.imgs.values():
            src = folder / image["file_name"]
            if not src.is_file():
                raise FileNotFoundError(f"{jf}: image {src} not found")
            (tmp / "images" / split / src.name).symlink_to(src.resolve())
            w, h = image["width"], image["height"]
            lines = []
            for a in coco.loadAnns(coco.getAnnIds(imgIds=image["id"], iscrowd=False)):
                x, y, bw, bh = a["bbox"]
                if bw <= 0 or bh <= 0 or a["category_id"] not in number:
                    continue
                box = np.clip([(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h], 0, 1)
                lines.append(f"{number[a['category_id']]} " + " ".join(f"{v:.6f}" for v in box))
            (tmp / "labels" / split / src.with_suffix(".txt").name).write_text("".join(f"{x}\n" for x in lines))
    _save_yaml(tmp / "data.yaml", {"path": str(root), "train": "images/train", "val": "images/val", "names": names})
    _publish(tmp, root)
    return root / "data.yaml"


def _save_yaml(path: Path, data: dict) -> None:
    from ultralytics.utils import YAML

    YAML.save(path, data)
