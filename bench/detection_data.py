"""A detection set that a CPU can learn: real CIFAR-10 photographs pasted onto crops of real COCO128 photographs.

    python bench/detection_data.py                     # the detection protocol's set, built once into the cache
    python bench/detection_data.py --train-images 8 --val-images 4 --canvas 64 --max-objects 1 --max-side 32

Each image is a square crop of a COCO128 photograph (train crops from its train photos, val crops from its val
photos) resized to the canvas, with 1 to ``max_objects`` CIFAR-10 images pasted at random sizes (side between
``min_side`` and ``max_side`` pixels, aspect ratio jittered up to ±25 %) at random positions that do not
overlap; each pasted image is one YOLO box of its CIFAR class. The training set pastes CIFAR *train* images, the
validation set CIFAR *test* images: no object is seen in both. COCO's own objects in the background are not
labelled (the pasted objects are the task).

The build is a function of its parameters and the two archives: the same seed gives byte-identical images and
labels. It is written into a temporary folder and renamed into place when complete (with ``build.json``, the
parameters and per-class box counts, and ``sources.json``, the CIFAR files pasted into each image), so an
interrupted build leaves nothing half made and a complete one with the same parameters is reused, never rebuilt. The cache is ``--cache-dir`` (default
``$DATAREDUCE_CACHE/detection`` or ``~/.cache/datareduce/detection``), outside the project tree.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import data  # noqa: E402
from datareduce._validate import UsageError  # noqa: E402
from datareduce.atomic import check_writable_dir  # noqa: E402
from datareduce.paths import cache_root  # noqa: E402

FORMAT = 1  # bump when the same parameters would draw different images
JPEG_QUALITY = 90
MAX_ASPECT = 1.25  # widths and heights of a pasted object differ by up to this factor from its side
PLACEMENT_TRIES = 50  # random positions tried per object before it is left out (the image gets fewer objects)


@dataclass(frozen=True)
class BuildParams:
    """What a build is made of; the defaults are the detection protocol's set."""
    train_images: int = 2000
    val_images: int = 500
    canvas: int = 96
    min_objects: int = 3
    max_objects: int = 8
    min_side: int = 24
    max_side: int = 40
    seed: int = 0

    def check(self) -> None:
        """UsageError naming the first bad value and what is allowed."""
        for name in ("train_images", "val_images", "min_objects"):
            if getattr(self, name) < 1:
                raise UsageError(f"{FLAGS[name][0]} {getattr(self, name)}: must be at least 1")
        if self.seed < 0:
            raise UsageError(f"--data-seed {self.seed}: must be 0 or more")
        if self.canvas < 32 or self.canvas % 32:
            raise UsageError(f"--canvas {self.canvas}: must be a multiple of 32 (YOLO's stride), at least 32")
        if self.max_objects < self.min_objects:
            raise UsageError(f"--max-objects {self.max_objects}: must be at least --min-objects ({self.min_objects})")
        if self.min_side < 8:
            raise UsageError(f"--min-side {self.min_side}: must be at least 8 pixels")
        if not self.min_side <= self.max_side <= self.canvas // 2:
            raise UsageError(f"--max-side {self.max_side}: must be between --min-side ({self.min_side}) and half "
                             f"the canvas ({self.canvas // 2})")

    def folder_name(self) -> str:
        digest = hashlib.sha256(json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True).encode()).hexdigest()
        return f"cifar-on-coco-{self.train_images}-{self.val_images}-{self.canvas}px-seed{self.seed}-{digest[:10]}"


def default_cache() -> Path:
    return cache_root() / "detection"


def build(params: BuildParams, cache_dir: Path | None = None, cifar: Path | None = None,
          coco: Path | None = None) -> Path:
    """The built set's folder (``data.yaml``, ``images/{train,val}``, ``labels/{train,val}``, ``build.json``),
    built if the cache does not hold it. ``cifar`` / ``coco``: the unpacked archives (default: bench/data's)."""
    params.check()
    root = Path(cache_dir or default_cache()).expanduser().resolve() / params.folder_name()
    if (root / "build.json").is_file():
        return root
    check_writable_dir(root.parent, f"--cache-dir {root.parent}")
    cifar = Path(cifar or data.unpack("cifar10-jpeg.tar.gz", "cifar10"))
    coco = Path(coco or data.unpack("coco128.tar.gz", "coco128"))
    names = sorted(p.name for p in (cifar / "train").iterdir() if p.is_dir())
    tmp = root.with_name(f".{root.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        counts, sources = {}, {}
        for index, (split, count, objects, photos) in enumerate((
                ("train", params.train_images, "train", "train"), ("val", params.val_images, "test", "val"))):
            rng = np.random.default_rng([params.seed, index])
            counts[split], sources[split] = _render_split(
                tmp, split, count, params, rng, cifar, _objects(cifar, objects, names),
                _photos(coco / "images" / photos, 2 * params.canvas))
        yaml = {"path": str(root), "train": "images/train", "val": "images/val", "names": names}
        (tmp / "data.yaml").write_text(json.dumps(yaml, indent=1) + "\n")  # JSON is YAML
        record = {"format": FORMAT, "params": asdict(params), "names": names, "boxes_per_class": counts,
                  "sources": {"objects": "CIFAR-10 (cifar10-jpeg.tar.gz): train split for train, test for val",
                              "backgrounds": "COCO128 (coco128.tar.gz): train photos for train, val for val"}}
        (tmp / "sources.json").write_text(json.dumps(sources) + "\n")
        (tmp / "build.json").write_text(json.dumps(record, indent=1) + "\n")
        root.parent.mkdir(parents=True, exist_ok=True)
        if root.exists():  # a concurrent build of the same parameters finished first: the same bytes
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _objects(cifar: Path, split: str, names: list) -> list:
    """(class index, path relative to ``cifar``) of every CIFAR image of one split, in a fixed order."""
    return [(c, f"{split}/{name}/{f.name}") for c, name in enumerate(names)
            for f in sorted((cifar / split / name).iterdir())]


def _photos(folder: Path, short_side: int) -> list:
    """The photographs of one COCO128 split, scaled so their short side is ``short_side`` pixels."""
    import cv2

    out = []
    for f in sorted(folder.iterdir()):
        im = cv2.imread(str(f), cv2.IMREAD_COLOR)
        scale = short_side / min(im.shape[:2])
        out.append(cv2.resize(im, (round(im.shape[1] * scale), round(im.shape[0] * scale)),
                              interpolation=cv2.INTER_AREA))
    return out


def _render_split(out: Path, split: str, count: int, p: BuildParams, rng, cifar: Path, objects: list,
                  photos: list) -> tuple:
    """Write ``count`` images and their labels; returns the boxes per class and each image's pasted CIFAR files
    (in label order)."""
    import cv2

    (out / "images" / split).mkdir(parents=True)
    (out / "labels" / split).mkdir(parents=True)
    order = rng.permutation(len(objects))  # every object once before any twice
    used = 0
    boxes_per_class = [0] * (1 + max(c for c, _ in objects))
    sources = []
    for n in range(count):
        canvas = _background(rng, photos, p.canvas)
        boxes = []
        for _ in range(int(rng.integers(p.min_objects, p.max_objects + 1))):
            side = float(np.exp(rng.uniform(np.log(p.min_side), np.log(p.max_side + 1))))
            aspect = float(np.exp(rng.uniform(-np.log(MAX_ASPECT), np.log(MAX_ASPECT))))
            w = min(p.canvas, max(4, round(side * np.sqrt(aspect))))
            h = min(p.canvas, max(4, round(side / np.sqrt(aspect))))
            xs = rng.integers(0, p.canvas - w + 1, PLACEMENT_TRIES)
            ys = rng.integers(0, p.canvas - h + 1, PLACEMENT_TRIES)
            free = [(int(x), int(y)) for x, y in zip(xs, ys)
                    if all(x >= bx + bw or bx >= x + w or y >= by + bh or by >= y + h for bx, by, bw, bh, *_ in boxes)]
            if not free:
                continue
            cls, path = objects[order[used % len(order)]]
            used += 1
            x, y = free[0]
            canvas[y:y + h, x:x + w] = paste(cifar / path, w, h)
            boxes.append((x, y, w, h, cls, path))
            boxes_per_class[cls] += 1
        ok, jpeg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        (out / "images" / split / f"{n:06d}.jpg").write_bytes(jpeg.tobytes())
        s = p.canvas
        (out / "labels" / split / f"{n:06d}.txt").write_text("".join(
            f"{cls} {(x + w / 2) / s:.6f} {(y + h / 2) / s:.6f} {w / s:.6f} {h / s:.6f}\n" for x, y, w, h, cls, _ in boxes))
        sources.append([path for *_, path in boxes])
    return boxes_per_class, sources


def paste(path: Path, w: int, h: int):
    """A CIFAR image resized to ``w`` × ``h`` pixels (BGR), as it is pasted."""
    import cv2

    return cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), (w, h), interpolation=cv2.INTER_LINEAR)


def _background(rng, photos: list, size: int) -> np.ndarray:
    """A random square crop (a third to all of the short side) of a random photograph, resized, maybe mirrored."""
    import cv2

    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    side = int(rng.integers(min(ph, pw) // 3, min(ph, pw) + 1))
    y, x = int(rng.integers(0, ph - side + 1)), int(rng.integers(0, pw - side + 1))
    crop = cv2.resize(photo[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop[:, ::-1]) if rng.integers(2) else crop


FLAGS = {  # BuildParams field -> (flag, help)
    "train_images": ("--train-images", "training images"),
    "val_images": ("--val-images", "validation images"),
    "canvas": ("--canvas", "image side in pixels (train and validate at imgsz equal to it)"),
    "min_objects": ("--min-objects", "fewest objects drawn for an image"),
    "max_objects": ("--max-objects", "most objects drawn for an image (fewer if they do not fit)"),
    "min_side": ("--min-side", "smallest pasted object side in pixels"),
    "max_side": ("--max-side", "largest pasted object side in pixels"),
    "seed": ("--data-seed", "the build's random seed"),
}


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The build's parameters as flags (defaults: the protocol's set) and ``--cache-dir``."""
    for f in fields(BuildParams):
        flag, text = FLAGS[f.name]
        parser.add_argument(flag, dest=f"build_{f.name}", type=int, default=None, help=f"{text} (default {f.default})")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where built sets go (default: $DATAREDUCE_CACHE/detection or ~/.cache/datareduce/detection)")


def params_from(args, **defaults) -> BuildParams:
    """BuildParams from parsed flags; ``defaults`` replace the protocol's where a flag was not given."""
    given = {f.name: getattr(args, f"build_{f.name}") for f in fields(BuildParams)}
    return BuildParams(**{**defaults, **{k: v for k, v in given.items() if v is not None}})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_arguments(p)
    a = p.parse_args(argv)
    try:
        root = build(params_from(a), a.cache_dir)
    except (UsageError, FileNotFoundError) as exc:
        print(f"detection_data.py: error: {exc}", file=sys.stderr)
        return 2
    print(root / "data.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
