"""Why does faithful ADONIS lose accuracy? Per-epoch evidence from the benchmark's raw logs.

    python bench/diagnose.py bench/results

Reads runs/<method>/seed<k>/log.jsonl of the ADONIS runs and writes <results>/diagnosis/: one PNG per question
(kept fraction, class balance of the kept samples, loss of the kept samples against all samples, accuracy) and
diagnosis.json with the numbers behind them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datareduce import records  # noqa: E402
from datareduce.atomic import write_text  # noqa: E402


def epochs_of(root: Path, method: str, seed: int):
    log = root / "runs" / method / f"seed{seed}" / records.LOG_NAME
    return [r for r in records.read(log) if r.get("type") == "epoch"] if log.exists() else None


def imbalance(per_class) -> float:
    """Max over min per-class kept count (inf when a class got nothing)."""
    c = np.asarray(per_class, dtype=float)
    return float("inf") if c.min() == 0 else float(c.max() / c.min())


def main(argv=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = a.results / "diagnosis"
    out.mkdir(parents=True, exist_ok=True)
    methods = sorted(d.name for d in (a.results / "runs").iterdir()
                     if (d.name.startswith("adonis") or d.name in ("random-keep", "full", "sb"))
                     and epochs_of(a.results, d.name, a.seed))
    data = {m: epochs_of(a.results, m, a.seed) for m in methods}
    summary = {}
    for m, eps in data.items():
        summary[m] = [{"epoch": e["epoch"], "top1": e.get("top1"), "keep_fraction": e.get("keep_fraction"),
                       "mean_loss_all": e.get("mean_loss_all"), "mean_loss_kept": e.get("mean_loss_kept"),
                       "kept_per_class": e.get("kept_per_class"),
                       "class_imbalance": imbalance(e["kept_per_class"]) if e.get("kept_per_class") else None}
                      for e in eps]
    write_text(out / "diagnosis.json", json.dumps(summary, indent=1) + "\n")

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for m, eps in data.items():
        ep = [e["epoch"] for e in eps]
        axes[0, 0].plot(ep, [e.get("top1") for e in eps], marker=".", label=m)
        if eps[0].get("keep_fraction") is not None:
            axes[0, 1].plot(ep, [e.get("keep_fraction") for e in eps], marker=".", label=m)
        if eps[0].get("mean_loss_kept") is not None:
            ratio = [e["mean_loss_kept"] / e["mean_loss_all"] if e.get("mean_loss_kept") and e.get("mean_loss_all")
                     else None for e in eps]
            axes[1, 0].plot(ep, ratio, marker=".", label=m)
        if eps[0].get("kept_per_class") is not None:
            imb = [min(imbalance(e["kept_per_class"]), 100) for e in eps]
            axes[1, 1].plot(ep, imb, marker=".", label=m)
    titles = ["validation top-1 %", "kept fraction per epoch", "mean loss of kept / mean loss of all scored",
              "class imbalance of kept samples (max/min count, capped at 100)"]
    for ax, t in zip(axes.flat, titles):
        ax.set_title(t, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1, 1].set_yscale("log")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "adonis_diagnosis.png", dpi=100)

    faithful = data.get("adonis-eta3")
    if faithful and faithful[0].get("kept_per_class"):
        mat = np.array([e["kept_per_class"] for e in faithful], dtype=float)
        fig, ax = plt.subplots(figsize=(7, 4))
        im = ax.imshow(mat.T, aspect="auto", cmap="viridis")
        ax.set_xlabel("epoch")
        ax.set_ylabel("class")
        ax.set_title("faithful ADONIS (η=3): samples kept per class and epoch")
        fig.colorbar(im)
        fig.tight_layout()
        fig.savefig(out / "adonis_kept_per_class.png", dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
