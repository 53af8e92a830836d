"""Turn the benchmark's raw per-epoch logs into summary.json, a Markdown table and two plots.

    python bench/summarize.py bench/results-long

Per run: final accuracy, the **counted cost** (samples scored × f + samples back-propagated, over the full
run's samples back-propagated; f = a no-grad scoring forward's time over a training step's, from
ceiling.json), and the wall-time train boost. Per method, over seeds: mean ± sd, and the paired difference to
full training and to the **compute-matched full frontier** at the method's own cost (full data for fewer epochs,
``full-c<c>`` runs, linearly interpolated between the measured c), each with a 95 % t interval over seeds. A
difference whose interval contains 0 is "within noise". Boosts of runs that ran beside another (``--parallel``)
are marked contended: only quiet runs give wall-time ratios.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from datareduce import metrics, records  # noqa: E402
from datareduce.atomic import write_text  # noqa: E402
from ceiling import ceiling  # noqa: E402

FRONTIER_PREFIX = "full-c"
METRIC_NAMES = {"top1": "top-1 accuracy", "map50_95": "mAP50-95", "map50": "mAP50"}
ALSO = {"map50_95": "map50"}  # a second metric also summarised (its final value per run) when the first is this


def quiet(run: dict) -> bool:
    """Whether a run's wall time is uncontended: one at a time, and no other runner's trainer running when it
    started (older runs did not record the latter)."""
    cond = run["conditions"]
    return cond.get("parallel", 1) == 1 and not cond.get("other_trainers_at_start")


def load_runs(root: Path) -> dict:
    """{method: {seed: run}} for every finished run under root/runs/<method>/seed<k>/log.jsonl."""
    runs = {}
    for log in sorted(root.glob("runs/*/seed*/log.jsonl")):
        recs = records.read(log)
        if not any(r.get("type") == "summary" for r in recs):
            continue  # unfinished
        method, seed = log.parent.parent.name, int(log.parent.name[4:])
        cond = log.parent / "conditions.json"
        runs.setdefault(method, {})[seed] = {
            "epochs": [r for r in recs if r.get("type") == "epoch"],
            "params": next((r for r in recs if r.get("type") == "run"), {}),
            "conditions": json.loads(cond.read_text()) if cond.exists() else {"parallel": 1}}
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


def t_interval(diffs):
    """Mean of paired differences and its 95 % t interval [lo, hi] (None with fewer than two)."""
    diffs = [d for d in diffs if d is not None]
    if not diffs:
        return None, None
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, None
    from scipy.stats import t

    half = t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, [mean - half, mean + half]


def verdict(ci) -> str:
    """above / below / within noise, from a 95 % interval of a difference (method − reference)."""
    if ci is None:
        return "n/a (one seed)"
    if ci[0] > 0:
        return "above"
    if ci[1] < 0:
        return "below"
    return "within noise"


def counted_cost(run, full, f: float) -> float:
    """(scored × f + back-propagated) / the full run's back-propagated samples."""
    full_bp = sum(e["samples_backprop"] for e in full["epochs"])
    scored = sum(e.get("samples_scored", 0) for e in run["epochs"])
    return (scored * f + sum(e["samples_backprop"] for e in run["epochs"])) / full_bp


def frontier_at(points, cost):
    """Accuracy of the full-data frontier at ``cost``: linear between the measured (cost, accuracy) points; the
    full run (cost 1) beyond the last; None below the cheapest point (outside the measured range)."""
    points = sorted(points)
    if not points or cost < points[0][0] - 1e-9:
        return None
    for (c0, a0), (c1, a1) in zip(points, points[1:]):
        if c0 <= cost <= c1:
            return a0 + (a1 - a0) * (cost - c0) / (c1 - c0) if c1 > c0 else a1
    return points[-1][1]


def summarize(root: Path, metric: str = "top1") -> list:
    runs = load_runs(root)
    if "full" not in runs:
        raise SystemExit(f"no finished 'full' baseline under {root}/runs: nothing to compare against")
    ceiling_file = root / "ceiling.json"
    cost_model = json.loads(ceiling_file.read_text()) if ceiling_file.exists() else None
    f = cost_model["forward_over_step"] if cost_model else 0.0
    protocol_file = root / "protocol.json"
    regime = json.loads(protocol_file.read_text())["protocol"] if protocol_file.exists() else root.name

    def final(run, which=metric):
        return trajectory(run["epochs"], which)[-1][1]

    also = ALSO.get(metric)

    frontier = {}  # seed -> [(cost, accuracy)] of the full-data runs, the full run included
    for method, by_seed in runs.items():
        if method == "full" or method.startswith(FRONTIER_PREFIX):
            for seed, run in by_seed.items():
                if seed in runs["full"]:
                    frontier.setdefault(seed, []).append((counted_cost(run, runs["full"][seed], f), final(run)))

    rows = []
    for method, by_seed in runs.items():
        per_seed = []
        for seed, run in sorted(by_seed.items()):
            base = runs["full"].get(seed)
            if base is None:
                continue
            b, m = base["epochs"], run["epochs"]
            full_samples = sum(e["samples_backprop"] for e in b)
            backprop = sum(e["samples_backprop"] for e in m) / full_samples
            scored = sum(e.get("samples_scored", 0) for e in m) / full_samples
            train_time = sum(e["train_time_s"] for e in m)
            select_time = sum(e.get("select_time_s") or 0.0 for e in m)
            cost = counted_cost(run, base, f)
            front = frontier_at(frontier.get(seed, []), cost) if len(frontier.get(seed, [])) > 1 else None
            per_seed.append({
                "seed": seed, "final": final(run), "acc_drop_pp": final(base) - final(run),
                "cost_fraction": cost, "vs_frontier_pp": None if front is None else final(run) - front,
                "train_boost": metrics.train_boost(trajectory(b, metric), trajectory(m, metric)),
                "quiet": quiet(run) and quiet(base),
                "boost_to_5pp": metrics.boost_to_drop(trajectory(b, metric), trajectory(m, metric), 5.0),
                "backprop_fraction": backprop, "scored_fraction": scored,
                "selector_overhead_pct": 100.0 * select_time / train_time if train_time else None,
                "ceiling": ceiling(f, scored, backprop) if cost_model else None,
                **({f"final_{also}": final(run, also) if trajectory(run["epochs"], also) else None} if also else {}),
            })
        if not per_seed:
            continue
        row = {"method": method, "regime": regime, "params": by_seed[min(by_seed)]["params"].get("args", {}),
               "reduce": by_seed[min(by_seed)]["params"].get("reduce"),
               "seeds": [p["seed"] for p in per_seed], "per_seed": per_seed}
        for key in ("final", "acc_drop_pp", "train_boost", "boost_to_5pp", "backprop_fraction", "scored_fraction",
                    "selector_overhead_pct", "ceiling", "cost_fraction", *([f"final_{also}"] if also else [])):
            row[key], row[key + "_sd"] = mean_sd([p[key] for p in per_seed])
        row["top1_mean"], row["top1_sd"] = row["final"], row["final_sd"]
        _, row["acc_drop_ci95"] = t_interval([p["acc_drop_pp"] for p in per_seed])
        row["vs_frontier_pp"], row["vs_frontier_ci95"] = t_interval([p["vs_frontier_pp"] for p in per_seed])
        row["vs_full"] = verdict(None if row["acc_drop_ci95"] is None else [-row["acc_drop_ci95"][1],
                                                                           -row["acc_drop_ci95"][0]])
        row["vs_frontier"] = verdict(row["vs_frontier_ci95"]) if row["vs_frontier_pp"] is not None else "n/a"
        row["boost_quiet"] = all(p["quiet"] for p in per_seed)
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


def fmt_ci(ci, digits=2):
    return "—" if ci is None else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def table(rows, order, metric="top1") -> str:
    head = (f"| method | final {metric} % | drop vs full, p.p. [95 % CI] | counted cost | vs frontier at that cost, "
            "p.p. [95 % CI] | verdict vs frontier | train boost | back-prop % | scored % | seeds |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    rank = {m: i for i, m in enumerate(order)}

    def key(r):
        m = r["method"]
        front = m == "full" or m.startswith(FRONTIER_PREFIX)
        return (0 if front else 1, -(r["cost_fraction"] or 0) if front else rank.get(m, len(rank)), m)

    lines = []
    for r in sorted(rows, key=key):
        boost = fmt(r["train_boost"], r["train_boost_sd"]) + "×" + ("" if r["boost_quiet"] else " (contended)")
        lines.append(
            f"| {r['method']} | {fmt(r['final'], r['final_sd'])} | {fmt(r['acc_drop_pp'])} {fmt_ci(r['acc_drop_ci95'])} "
            f"| {fmt(r['cost_fraction'], digits=3)} | {fmt(r['vs_frontier_pp'])} {fmt_ci(r['vs_frontier_ci95'])} "
            f"| {r['vs_frontier']} | {boost} | {fmt(r['backprop_fraction'], pct=True, digits=1)} "
            f"| {fmt(r['scored_fraction'], pct=True, digits=1)} | {len(r['seeds'])} |")
    return head + "\n".join(lines) + "\n"


def _save(fig, out: Path):
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(out)


def plot_cost(rows, out: Path, metric="top1"):
    """Accuracy against counted cost: the full-data frontier as a line, every method a point with sd bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    front = sorted((r for r in rows if r["method"] == "full" or r["method"].startswith(FRONTIER_PREFIX)),
                   key=lambda r: r["cost_fraction"])
    if front:
        ax.errorbar([r["cost_fraction"] for r in front], [r["final"] for r in front],
                    yerr=[r["final_sd"] or 0 for r in front], color="black", lw=2, marker="s", capsize=3,
                    label="full data, fewer epochs (frontier)")
    for r in rows:
        if r in front:
            continue
        ax.errorbar(r["cost_fraction"], r["final"], xerr=r["cost_fraction_sd"] or 0, yerr=r["final_sd"] or 0,
                    marker="o", capsize=3, ls="none", label=f"{r['method']} ({len(r['seeds'])} seed{'s' if len(r['seeds']) > 1 else ''})")
    ax.set_xlabel("counted cost (scoring forwards × f + back-propagated samples) / full training's")
    name = METRIC_NAMES.get(metric, metric)
    ax.set_ylabel(f"final validation {name} %")
    ax.set_title(f"{name if name.startswith('mAP') else name[0].upper() + name[1:]} against compute ({rows[0]['regime']} protocol); mean ± sd over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)


def plot_time(root: Path, out: Path, metric="top1"):
    """Accuracy trajectories against cumulative training-loop wall time (lowest seed of each method)."""
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
    ax.set_ylabel(f"validation {METRIC_NAMES.get(metric, metric)} %")
    ax.set_title("Accuracy against wall time (lowest seed of each method)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)


def main(argv=None):
    from methods import PAPER_TABLE

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path)
    p.add_argument("--metric", default="top1")
    a = p.parse_args(argv)
    rows = summarize(a.results, a.metric)
    write_text(a.results / "summary.json", json.dumps(rows, indent=1, sort_keys=True) + "\n")
    write_text(a.results / "table.md", table(rows, PAPER_TABLE, a.metric))
    plot_cost(rows, a.results / "accuracy_vs_cost.png", a.metric)
    plot_time(a.results, a.results / "accuracy_vs_time.png", a.metric)
    print(table(rows, PAPER_TABLE, a.metric))


if __name__ == "__main__":
    main()
