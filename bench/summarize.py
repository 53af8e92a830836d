"""Turn the benchmark's raw per-epoch logs into summary.json, a Markdown table and an accuracy-vs-time plot.

    python bench/summarize.py bench/results
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from datareduce import metrics, records  # noqa: E402
from datareduce.atomic import write_text  # noqa: E402
from ceiling import ceiling  # noqa: E402


def load_runs(root: Path) -> dict:
    """{method: {seed: epoch records}} for every finished run under root/runs/<method>/seed<k>/log.jsonl."""
    runs = {}
    for log in sorted(root.glob("runs/*/seed*/log.jsonl")):
        recs = records.read(log)
        if not any(r.get("type") == "summary" for r in recs):
            continue  # unfinished
        method, seed = log.parent.parent.name, int(log.parent.name[4:])
        runs.setdefault(method, {})[seed] = {"epochs": [r for r in recs if r.get("type") == "epoch"],
                                             "params": next((r for r in recs if r.get("type") == "run"), {})}
    return runs


def trajectory(epochs, metric):
    """(cumulative loop time, metric in %) per epoch that has the metric (mAP fractions become %)."""
    scale = 100.0 if metric.startswith("map") else 1.0
    return [(e["cumulative_train_time_s"], e[metric] * scale) for e in epochs if e.get(metric) is not None]


def mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(root: Path, metric: str = "top1") -> list:
    runs = load_runs(root)
    if "full" not in runs:
        raise SystemExit(f"no finished 'full' baseline under {root}/runs: nothing to compare against")
    cost = json.loads((root / "ceiling.json").read_text()) if (root / "ceiling.json").exists() else None
    rows = []
    for method, by_seed in runs.items():
        per_seed = []
        for seed, run in by_seed.items():
            base = runs["full"].get(seed)
            if base is None:
                continue
            b, m = base["epochs"], run["epochs"]
            full_samples = sum(e["samples_backprop"] for e in b)
            backprop = sum(e["samples_backprop"] for e in m) / full_samples
            scored = sum(e.get("samples_scored", 0) for e in m) / full_samples
            train_time = sum(e["train_time_s"] for e in m)
            select_time = sum(e.get("select_time_s", 0.0) for e in m)
            per_seed.append({
                "seed": seed, "final": trajectory(m, metric)[-1][1],
                "acc_drop_pp": metrics.accuracy_drop(trajectory(b, metric), trajectory(m, metric)),
                "train_boost": metrics.train_boost(trajectory(b, metric), trajectory(m, metric)),
                "boost_to_5pp": metrics.boost_to_drop(trajectory(b, metric), trajectory(m, metric), 5.0),
                "backprop_fraction": backprop, "scored_fraction": scored,
                "selector_overhead_pct": 100.0 * select_time / train_time if train_time else None,
                "ceiling": ceiling(cost["forward_over_step"], scored, backprop) if cost else None,
            })
        if not per_seed:
            continue
        row = {"method": method, "params": by_seed[min(by_seed)]["params"].get("args", {}),
               "seeds": [p["seed"] for p in per_seed], "per_seed": per_seed}
        for key in ("final", "acc_drop_pp", "train_boost", "boost_to_5pp", "backprop_fraction", "scored_fraction",
                    "selector_overhead_pct", "ceiling"):
            row[key], row[key + "_sd"] = mean_sd([p[key] for p in per_seed])
        if row["ceiling"]:
            row["share_of_ceiling"] = row["train_boost"] / row["ceiling"]
        rows.append(row)
    return rows


def fmt(v, sd=None, digits=2, pct=False):
    if v is None:
        return "—"
    scale = 100 if pct else 1
    s = f"{v * scale:.{digits}f}"
    return s + (f" ± {sd * scale:.{digits}f}" if sd else "")


def table(rows, order, metric="top1") -> str:
    head = (f"| method | final {metric} % | drop p.p. | train boost | boost to −5 p.p. | back-prop % | scored % "
            "| selector overhead % | ceiling | seeds |\n|---|---|---|---|---|---|---|---|---|---|\n")
    rank = {m: i for i, m in enumerate(order)}
    lines = []
    for r in sorted(rows, key=lambda r: (rank.get(r["method"], len(rank)), r["method"])):
        lines.append(f"| {r['method']} | {fmt(r['final'], r['final_sd'])} | {fmt(r['acc_drop_pp'], r['acc_drop_pp_sd'])} "
                     f"| {fmt(r['train_boost'], r['train_boost_sd'])}× | {fmt(r['boost_to_5pp'], r['boost_to_5pp_sd'])} "
                     f"| {fmt(r['backprop_fraction'], pct=True, digits=1)} | {fmt(r['scored_fraction'], pct=True, digits=1)} "
                     f"| {fmt(r['selector_overhead_pct'])} | {fmt(r['ceiling'])} | {len(r['seeds'])} |")
    return head + "\n".join(lines) + "\n"


def plot(root: Path, out: Path, metric="top1"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load_runs(root)
    fig, ax = plt.subplots(figsize=(9, 6))
    for method, by_seed in sorted(runs.items()):
        seed = min(by_seed)
        t, acc = zip(*trajectory(by_seed[seed]["epochs"], metric))
        ax.plot(t, acc, marker=".", label=method, lw=2.5 if method == "full" else 1.2)
    ax.set_xlabel("training-loop wall time, s (cumulative)")
    ax.set_ylabel(f"validation {metric} %")
    ax.set_title("Accuracy against wall time (seed %d)" % min(min(s) for s in runs.values()))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(out)


def main(argv=None):
    from methods import PAPER_TABLE

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path)
    p.add_argument("--metric", default="top1")
    a = p.parse_args(argv)
    rows = summarize(a.results, a.metric)
    write_text(a.results / "summary.json", json.dumps(rows, indent=1, sort_keys=True) + "\n")
    write_text(a.results / "table.md", table(rows, PAPER_TABLE, a.metric))
    plot(a.results, a.results / "accuracy_vs_time.png", a.metric)
    print(table(rows, PAPER_TABLE, a.metric))


if __name__ == "__main__":
    main()
