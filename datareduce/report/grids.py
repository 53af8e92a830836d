"""Image grids: the most and least selected images, the IDS class prototypes with their nearest and farthest."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .canvas import DROPPED_COLOR, KEPT_COLOR, new_figure
from .images import Images
from .runs import Run
from .selection import kept_mask


def _hex_rgb(color: str):
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def _fit(img, size: int):
    """``img`` scaled to fit a ``size`` square (small images enlarged with nearest-neighbour, no blur)."""
    from PIL import Image

    w, h = img.size
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(new, Image.NEAREST if scale >= 1 else Image.BILINEAR)


def fig_mosaic(images: Images, cells: Sequence, cols: int, title: str, row_labels: Sequence[str] = (),
               cell: int = 76, border: int = 3, label_h: int = 14, fontsize: float = 7):
    """One image: ``cells`` laid out on a grid of ``cols`` columns, each ``(index or None, label, frame colour
    or None)``; ``row_labels`` are written sideways left of each row (one axes in all: fast to draw)."""
    rows = max(1, math.ceil(len(cells) / cols))
    step_x, step_y = cell + 6, cell + label_h + 4
    left = 18 if row_labels else 0
    canvas = np.full((rows * step_y, left + cols * step_x, 3), 255, dtype=np.uint8)
    texts = []
    for k, (idx, label, frame) in enumerate(cells):
        r, c = divmod(k, cols)
        x0, y0 = left + c * step_x + 3, r * step_y + label_h + 2
        if label:
            texts.append((x0 + cell / 2, y0 - 2, label))
        if idx is None:
            continue
        inner = cell - 2 * border
        thumb = np.asarray(_fit(images.image(int(idx)), inner))
        th, tw = thumb.shape[:2]
        ys, xs = y0 + border + (inner - th) // 2, x0 + border + (inner - tw) // 2
        if frame is not None:  # a frame hugging the picture, whatever its aspect ratio
            canvas[ys - border:ys + th + border, xs - border:xs + tw + border] = _hex_rgb(frame)
        canvas[ys:ys + th, xs:xs + tw] = thumb[..., :3]
    h_title = 26
    fig = new_figure(canvas.shape[1] / 100, (canvas.shape[0] + h_title) / 100)
    ax = fig.add_axes((0, 0, 1, canvas.shape[0] / (canvas.shape[0] + h_title)))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xlim(0, canvas.shape[1])
    ax.set_ylim(canvas.shape[0], 0)
    ax.axis("off")
    for x, y, text in texts:
        ax.text(x, y, text, ha="center", va="bottom", fontsize=fontsize, clip_on=False)
    for r, text in enumerate(row_labels):
        ax.text(3, r * step_y + label_h + 2 + cell / 2, text, rotation=90, ha="left", va="center", fontsize=8)
    fig.text(0.5, 1 - 4 / (canvas.shape[0] + h_title), title, ha="center", va="top", fontsize=9)
    return fig


def fig_selected_grid(run: Run, most, least, title: str, cols: int = 8, labels=("most", "least")):
    """Figure 8c/d: the most and the least often back-propagated images, each labelled with its class and
    count (``least`` may be empty: one block)."""
    imgs = run.images
    cells, row_labels = [], []
    for ids_, label in zip((most, least), labels):
        if not len(ids_):
            continue
        block = [(i, f"{imgs.class_names[imgs.labels[i]][:11]} ×{run.counts[i]}", None) for i in ids_]
        block += [(None, None, None)] * (-len(block) % cols)
        cells += block
        row_labels += [label] * (len(block) // cols)
    return fig_mosaic(imgs, cells, cols, title, row_labels)


def fig_ids_prototypes(run: Run, emb: np.ndarray, k: int = 6, max_classes: int = 10):
    """Figure 6: per class, the prototype (nearest the centroid), its nearest and its farthest images;
    green frame = kept by the manifest's first subset, red = dropped."""
    from .. import ids as ids_mod

    imgs, m = run.images, run.manifest
    params = m.get("params") or {}
    prototypes, seed = int(params.get("prototypes") or 1), int(params.get("seed") or 0)
    kept = kept_mask(m, imgs.keys)
    groups = ids_mod.groups(imgs.labels, len(imgs))[:max_classes]
    cells = []
    for row, (label, members) in enumerate(groups):
        dist, nearest = ids_mod.centroid_distances(emb[members].astype(np.float64), prototypes, seed)
        order = np.argsort(dist, kind="stable")
        proto = members[nearest[0]] if len(nearest) else members[order[0]]
        rest = [members[p] for p in order if members[p] != proto]
        near, far = rest[:k], rest[::-1][:k]
        far = far[:max(0, len(rest) - len(near))]  # a small class: no image twice
        frame = lambda i: KEPT_COLOR if kept[i] else DROPPED_COLOR  # noqa: E731
        name = imgs.class_names[label][:12] if len(imgs.class_names) > 1 else "prototype"
        cells.append((proto, name, frame(proto)))
        cells.append((None, None, None))
        cells += [(i, ("nearest →" if j == 0 and row == 0 else None), frame(i)) for j, i in enumerate(near)]
        cells += [(None, None, None)] * (k - len(near) + 1)
        cells += [(i, ("farthest →" if j == 0 and row == 0 else None), frame(i)) for j, i in enumerate(far)]
        cells += [(None, None, None)] * (k - len(far))
    mode = m["subsets"][0].get("mode") or m.get("method")
    return fig_mosaic(imgs, cells, 2 * k + 3, f"{run.name}: per class the prototype (left), the images nearest to "
                      f"and farthest from the centroid; frame green = kept, red = dropped by the {mode} subset")
