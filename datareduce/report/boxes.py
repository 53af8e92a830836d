"""The boxes of a detection run's training images: YOLO label files read, and boxes counted per class.

Ultralytics finds an image's labels by replacing the last ``images`` folder of its path with ``labels`` and its
suffix with ``.txt``; each row is ``class cx cy w h`` (normalised to the image; a segment's polygon instead of the
box is reduced to its bounding box, as Ultralytics does). An image without a label file is a background image (no
boxes).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np


def label_file(image_file) -> Path:
    """Where Ultralytics looks for the labels of ``image_file``: ``…/images/…/x.jpg`` becomes
    ``…/labels/…/x.txt``."""
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    path = str(image_file)
    if images in path:
        path = labels.join(path.rsplit(images, 1))
    return Path(path.rsplit(".", 1)[0] + ".txt")


def read_labels(path: Path) -> np.ndarray:
    """The boxes of one YOLO label file, ``(k, 5)``: class, cx, cy, w, h. A missing file: no boxes. A row that is
    not a class and four to many coordinates in [0, 1] raises ValueError naming the line."""
    if not path.is_file():
        return np.zeros((0, 5))
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise ValueError(f"line {n} is not numbers: {line.strip()[:60]!r}") from None
        cls, coords = values[0], np.asarray(values[1:])
        if cls < 0 or cls != int(cls) or len(coords) < 4 or len(coords) % 2:
            raise ValueError(f"line {n} is not 'class cx cy w h' (a class id and normalised coordinates): "
                             f"{line.strip()[:60]!r}")
        if len(coords) > 4:  # a segment: its polygon's bounding box
            xs, ys = coords[0::2], coords[1::2]
            coords = np.array([(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, xs.max() - xs.min(),
                               ys.max() - ys.min()])
        rows.append([cls, *coords])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


@dataclass
class Boxes:
    """Every training image's boxes (``per_image[i]``: ``(k, 5)`` class, cx, cy, w, h) and the class names; the
    label files that could not be read are listed (their images count as having no boxes)."""

    per_image: List[np.ndarray]
    names: List[str]
    unreadable: List[tuple]  # (label file, why)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def per_class(self, weights: Optional[np.ndarray] = None) -> np.ndarray:
        """Boxes per class over the training set, each image's boxes counted ``weights[i]`` times (default once)."""
        out = np.zeros(self.num_classes, dtype=np.int64)
        for i, b in enumerate(self.per_image):
            if len(b):
                w = 1 if weights is None else int(weights[i])
                if w:
                    np.add.at(out, b[:, 0].astype(np.int64), w)
        return out


def class_names(names, found: Sequence[int] = ()) -> List[str]:
    """The class names of a data YAML's ``names`` (a list, or a dict of id → name), extended by the ids of any
    class found in the labels beyond them (named by number)."""
    if isinstance(names, dict):
        table = {int(k): str(v) for k, v in names.items()}
    else:
        table = dict(enumerate(str(v) for v in (names or [])))
    top = max([*table, *found], default=-1)
    return [table.get(c, str(c)) for c in range(top + 1)]


def load_boxes(files: Sequence, names) -> Boxes:
    """The boxes of every image in ``files`` (the run's training listing) and the class names (``names`` from
    the data YAML)."""
    per_image, unreadable = [], []
    for f in files:
        path = label_file(f)
        try:
            per_image.append(read_labels(path))
        except (ValueError, OSError, UnicodeDecodeError) as e:
            unreadable.append((str(path), str(e)))
            per_image.append(np.zeros((0, 5)))
    found = sorted({int(c) for b in per_image for c in b[:, 0]})
    return Boxes(per_image, class_names(names, found), unreadable)
