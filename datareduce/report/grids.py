"""Image grids: the most and least selected images, the IDS class prototypes with their nearest and farthest."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .canvas import BOX_COLORS, DROPPED_COLOR, KEPT_COLOR, new_figure
from .images import Images
from .runs import Run
from .selection import KeptSubset, kept_mask


def _hex_rgb(color: str):
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def _fit(img, size: int):
    """``img`` scaled to fit a ``size`` square (small images enlarged with nearest-neighbour, no blur)."""
    from PIL import Image

    w, h = img.size
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(new, Image.NEAREST if scale >= 1 else Image.BILINEAR)


def draw_boxes(thumb, boxes: np.ndarray):
    """``thumb`` (a PIL image) with the YOLO ``boxes`` (class, cx, cy, w, h; normalised) drawn on it, one colour
    per class (:data:`~.canvas.BOX_COLORS`)."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(thumb)
    w, h = thumb.size
    width = max(1, round(max(w, h) / 80))
    for cls, cx, cy, bw, bh in boxes:
        x0, y0 = round((cx - bw / 2) * w), round((cy - bh / 2) * h)  # the box's first and last pixel columns/rows
        x1, y1 = max(x0, round((cx + bw / 2) * w) - 1), max(y0, round((cy + bh / 2) * h) - 1)
        draw.rectangle((x0, y0, x1, y1), outline=BOX_COLORS[int(cls) % len(BOX_COLORS)], width=width)
    return thumb


def fig_mosaic(images: Images, cells: Sequence, cols: int, title: str, row_labels: Sequence[str] = (),
               cell: int = 76, border: int = 3, label_h: int = 14, fontsize: float = 7):
    """One image: ``cells`` laid out on a grid of ``cols`` columns, each ``(index or None, label, frame colour
    or None)``; ``row_labels`` are written sideways left of each row (one axes in all: fast to draw). Detection
    images get their boxes drawn, and a legend of the class colours under the grid."""
    boxes = images.boxes
    if boxes is not None:
        cell = max(cell, 104)  # boxes of small objects stay visible
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
        thumb = _fit(images.image(int(idx)), inner)
        thumb = np.asarray(draw_boxes(thumb, boxes.per_image[int(idx)]) if boxes is not None else thumb)
        th, tw = thumb.shape[:2]
        ys, xs = y0 + border + (inner - th) // 2, x0 + border + (inner - tw) // 2
        if frame is not None:  # a frame hugging the picture, whatever its aspect ratio
            canvas[ys - border:ys + th + border, xs - border:xs + tw + border] = _hex_rgb(frame)
        canvas[ys:ys + th, xs:xs + tw] = thumb[..., :3]
    columns = _legend_columns(boxes.names, canvas.shape[1]) if boxes is not None else 1
    h_title = 26
    h_legend = 16 * math.ceil(len(boxes.names) / columns) + 6 if boxes is not None and boxes.names else 0
    height = canvas.shape[0] + h_title + h_legend
    fig = new_figure(canvas.shape[1] / 100, height / 100)
    ax = fig.add_axes((0, h_legend / height, 1, canvas.shape[0] / height))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xlim(0, canvas.shape[1])
    ax.set_ylim(canvas.shape[0], 0)
    ax.axis("off")
    for x, y, text in texts:
        ax.text(x, y, text, ha="center", va="bottom", fontsize=fontsize, clip_on=False)
    for r, text in enumerate(row_labels):
        ax.text(3, r * step_y + label_h + 2 + cell / 2, text, rotation=90, ha="left", va="center", fontsize=8)
    fig.text(0.5, 1 - 4 / height, title, ha="center", va="top", fontsize=9)
    if h_legend:
        _box_legend(fig, boxes.names, columns)
    return fig


def _legend_columns(names: Sequence[str], width_px: int) -> int:
    return max(1, min(len(names), width_px // 80))


def _box_legend(fig, names: Sequence[str], columns: int):
    """The class colours of the drawn boxes, along the bottom of ``fig``."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor="none", edgecolor=BOX_COLORS[c % len(BOX_COLORS)], linewidth=1.5, label=name[:14])
               for c, name in enumerate(names)]
    fig.legend(handles=handles, loc="lower center", ncol=columns, fontsize=7, frameon=False, handlelength=1.2,
               handletextpad=0.4, columnspacing=1.0, borderaxespad=0.2)


def fig_selected_grid(run: Run, most, least, title: str, cols: int = 8, labels=("most", "least")):
    """Figure 8c/d: the most and the least often back-propagated images, each labelled with its class and
    count (``least`` may be empty: one block)."""
    imgs = run.images
    cells, row_labels = [], []
    for ids_, label in zip((most, least), labels):
        if not len(ids_):
            continue
        block = [(i, f"{_cell_name(imgs, i)} ×{run.counts[i]}", None) for i in ids_]
        block += [(None, None, None)] * (-len(block) % cols)
        cells += block
        row_labels += [label] * (len(block) // cols)
    return fig_mosaic(imgs, cells, cols, title, row_labels)


def _cell_name(imgs: Images, i: int) -> str:
    """What a grid cell says of image ``i``: its class, or for a detection image its number of boxes."""
    if imgs.boxes is not None:
        n = len(imgs.boxes.per_image[i])
        return f"{n} box{'es' if n != 1 else ''}"
    return imgs.class_names[imgs.labels[i]][:11]


def fig_kept_dropped(run: Run, subset: KeptSubset, k: int = 16, cols: int = 8, seed: int = 0):
    """The images an offline ``subset`` keeps (top block, green frames) and drops (bottom block, red), ``k`` of
    each drawn at random (seeded), each labelled with its class or its number of boxes."""
    imgs, kept = subset.images, subset.kept
    rng = np.random.default_rng(seed)
    cells, row_labels = [], []
    for mask, label, frame in ((kept, "kept", KEPT_COLOR), (~kept, "dropped", DROPPED_COLOR)):
        members = np.flatnonzero(mask)
        if not len(members):
            continue
        pick = np.sort(rng.choice(members, size=min(k, len(members)), replace=False))
        block = [(int(i), _cell_name(imgs, int(i)), frame) for i in pick]
        block += [(None, None, None)] * (-len(block) % cols)
        cells += block
        row_labels += [label] * (len(block) // cols)
    return fig_mosaic(imgs, cells, cols, f"{run.name}: the {subset.what} keeps {int(kept.sum())} of {len(kept)} "
                      f"images; {min(k, int(kept.sum()))} kept (top) and {min(k, int((~kept).sum()))} dropped "
                      "(bottom) at random", row_labels)


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
