"""The report page: what a report holds and its self-contained ``index.html``."""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..run_files import COUNTS_NAME
from .runs import METRIC_LABEL, Run
from .table import DROP_PP


@dataclass
class Picture:
    """One figure of the report: its PNG file, title and caption."""

    file: str
    title: str
    caption: str


@dataclass
class BoxCounts:
    """Detection: the class names, the boxes per class of the training set, and what each run kept of them
    (:class:`~.selection.BoxShare`)."""

    names: List[str]
    total: np.ndarray
    shares: list


@dataclass
class Report:
    """What :func:`datareduce.report.build` wrote: the runs read, the table, the figures and notes, every file."""

    out: Path
    runs: List[Run]
    baseline: Optional[Run]
    table: List[dict]
    figures: List[Picture]
    notes: List[str]
    files: List[Path]
    class_name: Optional[str] = None
    box_counts: Optional[BoxCounts] = None

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def _fmt(v, digits=2, suffix=""):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, int):
        return f"{v:,}{suffix}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{suffix}"
    return html.escape(str(v))


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#222;
line-height:1.4;padding:0 16px}h1{font-size:1.6em;margin-bottom:4px}h2{font-size:1.2em;margin-top:28px;
border-bottom:1px solid #ddd;padding-bottom:3px}table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}
tr.base td{background:#eef6ff}figure{margin:14px 0}figure img{max-width:100%;border:1px solid #e5e5e5}
figcaption{font-size:13px;color:#555;max-width:900px}.muted{color:#666;font-size:13px}code{font-size:12px}
ul.notes li{font-size:13px;color:#664d00}
"""


def _box_table(counts: BoxCounts) -> str:
    """The per-class box counts: the training set's, then each run's kept boxes and their share; a run's most
    starved class (the lowest share) in bold."""
    e = html.escape
    parts = ["<h2>Boxes per class</h2><p class=muted>Boxes of each class in the training set (its YOLO label files) "
             "and, per run, the boxes in the images it kept (an offline subset) or back-propagated per epoch on "
             "average (online selection), with their share of the class's boxes. In bold: the run's lowest share, "
             "the class its subset starves most.</p>"]
    if not counts.shares:
        parts.append("<p class=muted>No run kept a subset of the boxes (full training keeps every box).</p>")
    head = "".join(f"<th colspan=2>{e(s.label)}</th>" for s in counts.shares)
    parts.append(f"<table><tr><th class=l>class</th><th>boxes in the training set</th>{head}</tr>")
    lowest = [int(np.nanargmin(s.share)) if np.isfinite(s.share).any() else None for s in counts.shares]
    for c, name in enumerate(counts.names):
        cells = [f"<td class=l>{e(name)}</td>", f"<td>{_fmt(int(counts.total[c]))}</td>"]
        for s, low in zip(counts.shares, lowest):
            kept = s.kept[c]
            kept = int(kept) if float(kept).is_integer() else float(kept)
            share = "–" if not np.isfinite(s.share[c]) else f"{100 * s.share[c]:.1f} %"
            if c == low:
                share = f"<b>{share}</b>"
            cells += [f"<td>{_fmt(kept, 1)}</td>", f"<td>{share}</td>"]
        parts.append(f"<tr>{''.join(cells)}</tr>")
    total = [f"<td>{_fmt(float(s.kept.sum()) if not float(s.kept.sum()).is_integer() else int(s.kept.sum()), 1)}"
             f"</td><td>{100 * s.overall:.1f} %</td>" for s in counts.shares]
    parts.append(f"<tr><td class=l><b>all</b></td><td>{_fmt(int(counts.total.sum()))}</td>{''.join(total)}</tr>")
    parts.append("</table>")
    return "".join(parts)


def render_html(report: Report) -> str:
    """The report page: self-contained (inline CSS, relative PNG links, no script, nothing fetched)."""
    e = html.escape
    runs, base = report.runs, report.baseline
    metric = runs[0].metric
    mlabel = METRIC_LABEL.get(metric, metric)
    parts = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
             "<meta name=viewport content='width=device-width,initial-scale=1'>",
             "<title>datareduce report</title><style>", _CSS, "</style></head><body>",
             "<h1>datareduce report</h1>",
             f"<p class=muted>{len(runs)} run(s); quality metric: {e(mlabel)}; baseline: "
             f"{e(base.name) if base else 'none'}.</p>",
             "<h2>Runs</h2><table><tr><th class=l>run</th><th class=l>method</th><th class=l>settings</th>"
             "<th class=l>read from</th>"
             "<th>epochs</th><th class=l>folder</th><th class=l>dataset</th><th class=l>files</th></tr>"]
    for r in runs:
        found = ["log.jsonl"] + ([COUNTS_NAME] if r.counts is not None else []) + \
                ([r.manifest_file] if r.manifest is not None else [])
        parts.append(f"<tr{' class=base' if r is base else ''}><td class=l>{e(r.name)}</td><td class=l>"
                     f"<b>{e(r.method)}</b></td><td class=l>{e(r.settings or '–')}</td>"
                     f"<td class=l>{e(r.method_source)}</td><td>{len(r.epochs)}</td>"
                     f"<td class=l><code>{e(str(r.path))}</code></td><td class=l>{e(r.data_path or '–')}</td>"
                     f"<td class=l>{e(', '.join(found))}</td></tr>")
    parts.append("</table>")

    parts.append("<h2>Metrics (the columns of the paper's Table A1)</h2>")
    if base is not None:
        parts.append(f"<p class=muted>Against the full-data run <b>{e(base.name)}</b>. Acc. drop = baseline final − "
                     f"run final, {e(mlabel)}; train boost = baseline training-loop time / run's, same epochs; "
                     f"boost to {DROP_PP:g} p.p. drop = baseline time to its final value / run's time to reach "
                     f"baseline final − {DROP_PP:g} (– when never reached). Offline preprocessing (IDS embedding "
                     "and selection) is reported apart, as the paper does."
                     + (" ⚠ marks a run whose full-data epochs took another time than the same epochs of the "
                        "baseline: its boosts are unreliable (see the notes)."
                        if any(row.get("boost_unreliable") for row in report.table) else "") + "</p>")
    parts.append("<p class=muted>Selector overhead = the time the selector and the accumulator took "
                 "(<code>select_time_s</code> in the epoch records) over the training-loop time; the scoring "
                 "forwards are counted apart (– for runs without online selection).</p>")
    head = ["run", "method", "epochs", f"final {metric}", f"best {metric}", "train time (s)"]
    if base is not None:
        head += ["acc. drop (p.p.)", "train boost", f"boost to −{DROP_PP:g} p.p.", "backprop vs baseline"]
    head += ["samples back-propagated", "scoring forwards", "preprocessing (s)", "selector overhead (%)"]
    parts.append("<table><tr>" + "".join(f"<th{' class=l' if i < 2 else ''}>{e(h)}</th>"
                                          for i, h in enumerate(head)) + "</tr>")
    for row in report.table:
        cells = [f"<td class=l>{e(row['run'])}</td>", f"<td class=l>{e(row['method'])}</td>",
                 f"<td>{row['epochs']}" + (f" <span class=muted>({row['epochs_compared']} compared)</span>"
                                           if base is not None and row.get('epochs_compared') not in
                                           (None, row['epochs']) else "") + "</td>",
                 f"<td>{_fmt(row['final'])}</td>", f"<td>{_fmt(row['best'])}</td>",
                 f"<td>{_fmt(row['train_time_s'], 1)}</td>"]
        if base is not None:
            warn = (f" <span title='timing unreliable: full-data epochs {row['timing_ratio']:.2f}× the baseline's'>⚠"
                    "</span>" if row.get("boost_unreliable") else "")
            cells += [f"<td>{_fmt(row.get('acc_drop'))}</td>",
                      f"<td>{_fmt(row.get('train_boost'), 2, '×')}{warn if row.get('train_boost') else ''}</td>",
                      f"<td>{_fmt(row.get('boost_to_drop'), 2, '×')}{warn if row.get('boost_to_drop') else ''}</td>",
                      f"<td>{_fmt(None if row.get('backprop_share') is None else 100 * row['backprop_share'], 1, '%')}"
                      "</td>"]
        cells += [f"<td>{_fmt(row['samples_backprop'])}</td>", f"<td>{_fmt(row['samples_scored'])}</td>",
                  f"<td>{_fmt(row['preprocessing_s'], 1)}</td>", f"<td>{_fmt(row['selector_overhead_pct'], 1)}</td>"]
        parts.append(f"<tr{' class=base' if row['baseline'] else ''}>{''.join(cells)}</tr>")
    parts.append("</table>")

    if report.box_counts is not None:
        parts.append(_box_table(report.box_counts))
    parts.append("<h2>Figures</h2>")
    for f in report.figures:
        parts.append(f"<figure id='{e(f.file)}'><figcaption><b>{e(f.title)}</b></figcaption>"
                     f"<img src='{e(f.file)}' alt='{e(f.title)}'><figcaption>{e(f.caption)}</figcaption></figure>")
    if report.notes:
        parts.append("<h2>Notes</h2><ul class=notes>" + "".join(f"<li>{e(n)}</li>" for n in report.notes) + "</ul>")
    parts.append("<p class=muted>Written by <code>datareduce report</code>; opens offline (no scripts, no "
                 "external resources).</p></body></html>\n")
    return "".join(parts)