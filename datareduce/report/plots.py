"""The charts: quality against time, selection rates, back-propagation counts, the PCA of the IDS embeddings."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .canvas import COLORS, DROPPED_COLOR, KEPT_COLOR, new_figure
from .embeddings import pca_2d
from .runs import METRIC_LABEL, Run
from .selection import backprop_share_per_epoch, keep_fraction_per_epoch, kept_mask
from .table import DROP_PP


def fig_metric_vs_time(runs: Sequence[Run], base: Optional[Run]):
    """Figure 7: quality against training-loop wall time, one line per run."""
    fig = new_figure(8, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    for i, r in enumerate(runs):
        traj = r.trajectory()
        if not traj:
            continue
        t, a = zip(*traj)
        ax.plot(t, a, marker="o", ms=3, lw=_width(i, len(runs)), color=COLORS[i % len(COLORS)],
                label=f"{r.name} ({r.method})" + (" — baseline" if r is base else ""))
    if base is not None and base.trajectory():
        target = base.trajectory()[-1][1] - DROP_PP
        ax.axhline(target, color="grey", ls="--", lw=1)
        ax.annotate(f"baseline final − {DROP_PP:g}", (0, target), xycoords=("axes fraction", "data"),
                    xytext=(4, 3), textcoords="offset points", fontsize=8, color="grey")
    ax.set_xlabel("training-loop wall time (s, cumulative; offline preprocessing not included)")
    metric = runs[0].metric
    ax.set_ylabel(METRIC_LABEL.get(metric, metric))
    ax.set_title("Quality against training time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def fig_selection_rate(runs: Sequence[Run]):
    """Per epoch: the share of the full training set back-propagated, and the online keep fraction."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(8, 5.6)
    ax1, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    for i, r in enumerate(runs):
        ep = [e["epoch"] for e in r.epochs]
        style = dict(marker="o", ms=3, color=COLORS[i % len(COLORS)], label=f"{r.name} ({r.method})",
                     lw=_width(i, len(runs)), zorder=2 + i)  # earlier runs wider and below: overlaps stay visible
        share = backprop_share_per_epoch(r)
        if any(v is not None for v in share):
            ax1.plot(ep, [np.nan if v is None else v for v in share], **style)
        keep = keep_fraction_per_epoch(r)
        if any(v is not None for v in keep):
            ax2.plot(ep, [np.nan if v is None else v for v in keep], **style)
    ax1.set_ylabel("back-propagated /\nfull training set")
    ax1.set_title("Selection rate per epoch")
    ax2.set_ylabel("kept / forward\n(online selection)")
    ax2.set_xlabel("epoch")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def fig_backprop_histogram(runs: Sequence[Run]):
    """How often each sample was back-propagated, one step histogram per run that recorded counts."""
    from matplotlib.ticker import MaxNLocator

    with_counts = [(i, r) for i, r in enumerate(runs) if r.counts is not None]
    fig = new_figure(8, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    top = max(int(r.counts.max()) for _, r in with_counts)
    edges = np.arange(top + 2) - 0.5 if top < 60 else np.linspace(-0.5, top + 0.5, 61)
    for i, r in with_counts:
        ax.hist(r.counts, bins=edges, histtype="step", lw=1.8, color=COLORS[i % len(COLORS)],
                label=f"{r.name} ({r.method}): mean {r.counts.mean():.2f}, never {int((r.counts == 0).sum())}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("times a sample was back-propagated over the run")
    ax.set_ylabel("samples")
    ax.set_title("Per-sample back-propagation counts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _width(i: int, n: int) -> float:
    """Line width of run ``i`` of ``n``: earlier runs wider (and drawn below), so overlapping lines stay visible."""
    return 1.4 + 2.0 * (n - 1 - i) / max(n - 1, 1)


def fig_ids_pca(run: Run, emb: np.ndarray, max_points: int = 4000, seed: int = 0):
    """Figure 6: the embeddings projected on their first two principal components, kept versus dropped
    (one panel per subset: with γ, the easy and the hard subsets), and coloured by class."""
    imgs, m = run.images, run.manifest
    xy = pca_2d(emb)
    n = len(xy)
    show = np.sort(np.random.default_rng(seed).permutation(n)[:max_points]) if n > max_points else np.arange(n)
    by_class = len(imgs.class_names) > 1
    panels = len(m["subsets"]) + by_class
    fig = new_figure(5 * panels, 4.8)
    for p, sub in enumerate(m["subsets"]):
        ax = fig.add_subplot(1, panels, p + 1)
        keep = kept_mask(m, imgs.keys, p)[show]
        pts = xy[show]
        ax.scatter(pts[~keep, 0], pts[~keep, 1], s=6, c=DROPPED_COLOR, alpha=0.6, lw=0,
                   label=f"dropped ({int((~kept_mask(m, imgs.keys, p)).sum())})")
        ax.scatter(pts[keep, 0], pts[keep, 1], s=6, c=KEPT_COLOR, alpha=0.6, lw=0,
                   label=f"kept ({sub['num_kept']})")
        what = sub.get("mode") or m.get("method")
        ax.set_title(f"{what} subset" + (f" from epoch {sub['from_epoch']}" if len(m["subsets"]) > 1 else ""),
                     fontsize=10)
        ax.legend(fontsize=8, markerscale=2.5, loc="best")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    if by_class:
        from matplotlib import colormaps

        ax = fig.add_subplot(1, panels, panels)
        cmap = colormaps["tab10" if len(imgs.class_names) <= 10 else "tab20"]
        for c, name in enumerate(imgs.class_names):
            sel = show[imgs.labels[show] == c]
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=cmap(c % cmap.N), alpha=0.6, lw=0, label=name[:14])
        ax.set_title("by class", fontsize=10)
        ax.set_xlabel("PC 1")
        if len(imgs.class_names) <= 20:
            ax.legend(fontsize=7, markerscale=2.5, loc="best", ncol=2)
    fig.suptitle(f"{run.name}: 2-D PCA of the {emb.shape[1]}-d embeddings"
                 + (f" ({len(show)} of {n} samples shown)" if len(show) < n else ""), fontsize=10)
    fig.tight_layout()
    return fig


def fig_box_shares(shares: Sequence, names: Sequence[str], total: np.ndarray):
    """Detection: per class, the boxes in the training set (top) and the share of them each run kept (bottom;
    dashed: the run's share of all boxes), so a class a subset starves stands out below its run's line."""
    n = len(names)
    fig = new_figure(max(8, 0.32 * n + 2), 6.4)
    ax1, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    x = np.arange(n)
    ax1.bar(x, total, color="#999999")
    ax1.set_ylabel("boxes in the\ntraining set")
    ax1.set_title("Boxes per class: in the training set, and the share each run kept")
    for i, s in enumerate(shares):
        color = COLORS[i % len(COLORS)]
        ax2.plot(x, 100 * s.share, marker="o", ms=4, lw=1, color=color, label=f"{s.label} ({100 * s.overall:.1f} %)")
        ax2.axhline(100 * s.overall, color=color, ls="--", lw=0.8)
    ax2.set_ylabel("kept boxes / boxes\nof the class (%)")
    top = max([100.0] + [float(np.nanmax(100 * s.share)) for s in shares if np.isfinite(s.share).any()])
    ax2.set_ylim(0, top * 1.05)
    for ax in (ax1, ax2):
        ax.set_xticks(x)
        ax.set_xticklabels([name[:14] for name in names], rotation=45 if n > 6 else 0, ha="right" if n > 6 else
                           "center", fontsize=8)
        ax.set_xlim(-0.6, n - 0.4)
        ax.grid(alpha=0.3, axis="y")
    if shares:
        ax2.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
