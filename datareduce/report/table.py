"""The paper's Table A1 columns: each run against the full-data baseline, and whether their times compare."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .. import metrics as metrics_mod
from .._validate import UsageError
from .runs import Run

DROP_PP = 5.0  # the accuracy drop (percentage points) of the "boost to a drop" column
BUSY_RATIO = 1.25  # the same work taking this much longer (or shorter) in one run than in another: not comparable


def choose_baseline(runs: Sequence[Run], baseline: Optional[str] = None) -> Optional[Run]:
    """The full-data run the drop and boost columns are measured against: the one named by ``baseline`` (a run
    name or folder), else the first run whose method is ``full``; None when there is none."""
    if baseline is not None:
        for r in runs:
            if baseline in (r.name, str(r.path)) or Path(baseline).expanduser().resolve() == r.path.resolve():
                return r
        raise UsageError(f"--baseline {baseline!r} is none of the runs given: {', '.join(r.name for r in runs)}")
    return next((r for r in runs if r.is_full), None)


def metrics_table(runs: Sequence[Run], base: Optional[Run]) -> List[dict]:
    """One row per run: the paper's Table A1 columns against ``base`` plus the accounting.

    Runs with a different number of epochs than the baseline are compared over their common epochs
    (``epochs_compared`` says how many)."""
    rows = []
    for r in runs:
        traj = r.trajectory()
        row = {"run": r.name, "method": r.method, "epochs": len(r.epochs), "metric": r.metric,
               "final": traj[-1][1] if traj else None, "best": max(a for _, a in traj) if traj else None,
               "train_time_s": traj[-1][0] if traj else None,
               "samples_backprop": r.total("samples_backprop"), "samples_scored": r.total("samples_scored"),
               "preprocessing_s": r.preprocessing_s, "baseline": base is not None and r is base}
        row["selector_overhead_pct"] = selector_overhead_pct(r)
        if base is not None and r.metric == base.metric:
            n = min(len(r.epochs), len(base.epochs))
            b, m = base.trajectory(n), r.trajectory(n)
            row["epochs_compared"] = n
            if b and m:
                row["acc_drop"] = metrics_mod.accuracy_drop(b, m)
                row["train_boost"] = metrics_mod.train_boost(b, m) if m[-1][0] > 0 else None
                row["boost_to_drop"] = None if r is base else metrics_mod.boost_to_drop(b, m, DROP_PP)
                bp_base, bp = base.total("samples_backprop", n), r.total("samples_backprop", n)
                row["backprop_share"] = bp / bp_base if bp_base and bp is not None else None
            timing = None if r is base else timing_ratio(r, base)
            row["timing_ratio"] = None if timing is None else timing[0]
            row["boost_unreliable"] = timing is not None and max(timing[0], 1 / timing[0]) >= BUSY_RATIO
        rows.append(row)
    return rows


def selector_overhead_pct(run: Run) -> Optional[float]:
    """The selector's share of the training loop, in %: ``select_time_s`` (the selector and the accumulator, the
    work this package adds besides the scoring forwards) over ``train_time_s``, summed over the epochs that log
    it; None for runs without online selection (their records have no ``select_time_s``)."""
    timed = [e for e in run.epochs if e.get("select_time_s") is not None and e.get("train_time_s")]
    total = sum(float(e["train_time_s"]) for e in timed)
    return 100.0 * sum(float(e["select_time_s"]) for e in timed) / total if timed and total > 0 else None


def _full_data_epoch(e: dict) -> bool:
    """An epoch that did what full-data training does: nothing scored, nothing dropped."""
    return (not e.get("samples_scored") and e.get("keep_fraction") in (None, 1, 1.0)
            and isinstance(e.get("samples_backprop"), int) and e["samples_backprop"] > 0)


def timing_ratio(run: Run, other: Run):
    """(median of ``run``'s over ``other``'s training-loop time, epochs compared) over the epochs in which both did
    the same work — the same epoch, full data in both (nothing scored or dropped: a full run, ADONIS's ω warm-up,
    SB's priming epoch, InfoBatch's last epochs), the same samples back-propagated in the same number of steps;
    None when there is no such epoch. On an equally loaded machine it is close to 1."""
    theirs = {e.get("epoch"): e for e in other.epochs}
    ratios = []
    for e in run.epochs:
        o = theirs.get(e.get("epoch"))
        if o is None or not (_full_data_epoch(e) and _full_data_epoch(o)):
            continue
        if e["samples_backprop"] != o["samples_backprop"] or e.get("optimizer_steps") != o.get("optimizer_steps"):
            continue
        if (e.get("train_time_s") or 0) > 0 and (o.get("train_time_s") or 0) > 0:
            ratios.append(float(e["train_time_s"]) / float(o["train_time_s"]))
    return (float(np.median(ratios)), len(ratios)) if ratios else None


def timing_caution(row: dict, base: Run) -> str:
    """The note that marks a row's boosts unreliable."""
    r = row["timing_ratio"]
    return (f"{row['run']}: its full-data epochs took {r:.2f}× as long as the same epochs of the baseline {base.name} "
            f"(the same work): the machine was not equally loaded during the two runs (another job, a busy CPU or "
            f"GPU), so its train boost and boost to −{DROP_PP:g} p.p. are unreliable (marked ⚠); rerun them on an "
            "idle machine to compare times")
