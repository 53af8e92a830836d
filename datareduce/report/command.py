"""``datareduce report`` put together: read the runs, write every figure and the page (:func:`build`)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from .._validate import UsageError
from ..atomic import write_bytes, write_text
from ..run_files import COUNTS_NAME
from .canvas import png_bytes
from .embeddings import manifest_extractor_key, run_embeddings
from .grids import fig_ids_prototypes, fig_kept_dropped, fig_selected_grid
from .page import BoxCounts, Picture, Report, render_html
from .plots import fig_backprop_histogram, fig_box_shares, fig_ids_pca, fig_metric_vs_time, fig_selection_rate
from .runs import Run, load_runs
from .selection import box_shares, kept_subsets, most_least, whole_set
from .table import DROP_PP, choose_baseline, metrics_table, timing_caution


def _slug(text: str) -> str:
    """``text`` as a file-name part: letters, digits, ``-_.``; anything else becomes ``-``."""
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)
    return keep.strip("-.") or "run"


def _pick_class(runs: Sequence[Run], class_name: Optional[str]):
    """The class of the per-class grids: the one asked for (checked), else the one the first run with varied
    counts back-propagated least often on average. Returns (name, the run it was picked from or None)."""
    with_images = [r for r in runs if r.images is not None and r.counts is not None]
    if not with_images:
        return None, None
    names = with_images[0].images.class_names
    if class_name is not None:
        for r in with_images:
            if class_name not in r.images.class_names:
                close = ", ".join(r.images.class_names[:20])
                raise UsageError(f"--class {class_name!r} is not a class of {r.name}'s dataset: its classes are "
                                 f"{close}{' …' if len(r.images.class_names) > 20 else ''}")
        return class_name, None
    varied = [r for r in with_images if r.counts.min() != r.counts.max()] or with_images
    r = varied[0]
    means = np.array([r.counts[r.images.labels == c].mean() if (r.images.labels == c).any() else np.inf
                      for c in range(len(names))])
    c = int(np.argmin(means))
    return names[c], r


def class_choice(run: Run, source: Optional[Run]) -> str:
    """Why ``run``'s per-class grid shows the class it shows (``source``: the run it was picked from)."""
    if source is None:
        return "chosen with --class"
    if source is run:
        return (f"the class this {run.method} run back-propagated least often on average; pass --class NAME for "
                "another")
    return (f"the class the {source.method} run {source.name} back-propagated least often on average, shown for "
            f"every run so they can be compared (not picked from this {run.method} run's counts); pass --class NAME "
            "for another")


def _box_counts(runs: Sequence[Run], notes: List[str]) -> Optional[BoxCounts]:
    """Detection runs: the boxes per class of the training set and what each run kept of them (runs over another
    listing than the first detection run's are left out, with a note)."""
    with_boxes = [r for r in runs if r.images is not None and r.images.boxes is not None]
    if not with_boxes:
        return None
    first = with_boxes[0]
    boxes = whole_set(first).boxes
    if boxes.unreadable:
        path, why = boxes.unreadable[0]
        notes.append(f"{len(boxes.unreadable)} label file(s) of the training set could not be read (first: {path}: "
                     f"{why}): their images count as having no boxes")
    shares = []
    for r in with_boxes:
        if whole_set(r).keys != whole_set(first).keys:
            notes.append(f"{r.name}: trained on other images than {first.name}, so its boxes per class are not "
                         "compared with theirs")
            continue
        shares += box_shares(r)
    return BoxCounts(names=boxes.names, total=boxes.per_class(), shares=shares)


def build(run_dirs: Sequence, out, class_name: Optional[str] = None, data_path=None, cache_dir=None,
          baseline: Optional[str] = None, grid: int = 16, embed_missing: bool = True,
          progress: Optional[Callable[[str], None]] = None,
          embed_progress: Optional[Callable[[int, int], None]] = None) -> Report:
    """Read the runs, write every figure and ``index.html`` into ``out``; returns what was written.

    ``progress(step)`` is called before each figure; ``embed_progress(done, total)`` while recomputing
    embeddings that are not cached (``embed_missing=False`` skips those figures instead).
    """
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise UsageError(f"grid must be a positive integer (images per grid), got {grid!r}")
    from ..extras import require

    require("matplotlib", "report", "datareduce report (its figures)")  # before any work
    runs = load_runs(run_dirs, data_path)
    base = choose_baseline(runs, baseline)
    metrics_in = {r.metric for r in runs}
    if len(metrics_in) > 1:
        raise UsageError(f"the runs measure different things ({', '.join(sorted(metrics_in))}): report "
                         "classification and detection runs separately")
    chosen, picked_from = _pick_class(runs, class_name)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    step = progress or (lambda s: None)
    notes: List[str] = []
    figures: List[Picture] = []
    files: List[Path] = []

    def save(fig, name, title, caption):
        files.append(write_bytes(out / name, png_bytes(fig)))
        figures.append(Picture(name, title, caption))

    if base is None:
        notes.append("no full-data run among the runs (method 'full' in the run record, or --baseline RUN): the "
                     "columns measured against it (accuracy drop, boosts) are left out")
    table = metrics_table(runs, base)
    notes.extend(timing_caution(row, base) for row in table if row.get("boost_unreliable"))
    if base is not None:
        for r in runs:
            if r is not base and None not in (r.num_samples, base.num_samples) and r.num_samples != base.num_samples:
                notes.append(f"{r.name} trained on a dataset of {r.num_samples} samples, the baseline {base.name} on "
                             f"{base.num_samples}: its drop and boosts compare different data")

    step("quality against time")
    save(fig_metric_vs_time(runs, base), "metric_vs_time.png", "Quality against training time (Figure 7)",
         "Validation quality after each epoch against the cumulative wall time of the training loop (scoring, "
         "selection and optimizer steps; evaluation and offline preprocessing excluded)."
         + (f" Dashed: the baseline's final value minus {DROP_PP:g}, the target of the 'boost to "
            f"{DROP_PP:g} p.p. drop' column." if base is not None else ""))
    step("selection rate")
    save(fig_selection_rate(runs), "selection_rate.png", "Selection rate per epoch",
         "Top: samples back-propagated in the epoch over the size of the full training set (an offline subset "
         "shows as its kept fraction). Bottom: samples kept over samples forwarded (the online selection rate; "
         "1 for full-data epochs).")
    if any(r.counts is not None for r in runs):
        step("back-propagation histogram")
        save(fig_backprop_histogram(runs), "backprop_histogram.png", "How often each sample was back-propagated",
             "Histogram over the training set of the per-sample counts (selection_counts.npy). Full training puts "
             "every sample at the number of epochs; selection spreads them, and 'never' counts the samples the "
             "run never trained on.")
    for r in runs:
        if r.counts is None:
            notes.append(f"{r.name}: no {COUNTS_NAME}, so no count histogram or selection grids")
    for r in runs:
        if r.counts is None or r.images is None:
            continue
        if r.counts.min() == r.counts.max():
            notes.append(f"{r.name}: every sample was back-propagated {r.counts[0]} times, so its most/least "
                         "selected grids would show nothing: left out")
            continue
        slug = _slug(r.name)
        step(f"selection grids of {r.name}")
        most, least = most_least(r.counts, grid)
        save(fig_selected_grid(r, most, least, f"{r.name} ({r.method}): most (top) and least (bottom) often "
                                               "back-propagated, all classes"),
             f"selected_{slug}.png", f"{r.name}: most and least selected images (Figure 8c/d)",
             "Top block: the images back-propagated most often; bottom block: least often (ties drawn at "
             "random). The label under each image is its class and its count.")
        if chosen is not None and chosen in r.images.class_names and len(r.images.class_names) > 1:
            why = class_choice(r, picked_from)
            members = np.flatnonzero(r.images.labels == r.images.class_names.index(chosen))
            most, least = most_least(r.counts, grid, members)
            name = f"selected_{slug}_class-{_slug(chosen)}.png"
            if len(members) and r.counts[members].min() == r.counts[members].max():
                n = int(r.counts[members[0]])
                save(fig_selected_grid(r, most, [], f"{r.name} ({r.method}): every image of class {chosen!r} was "
                                                    f"back-propagated {n} times", labels=("sample",)),
                     name, f"{r.name}: class {chosen!r}, all {len(members)} images back-propagated {n} times",
                     f"One class ({why}): its images were all selected equally often"
                     + (", i.e. never: the run did not train on this class at all." if n == 0 else "."))
            else:
                save(fig_selected_grid(r, most, least, f"{r.name} ({r.method}): class {chosen!r}, most (top) and "
                                                       "least (bottom) often back-propagated"),
                     name, f"{r.name}: class {chosen!r}, most and least selected", f"The same for one class ({why}).")
    for r in runs:
        if r.images is None or r.images.boxes is None:
            continue
        subsets = kept_subsets(r)
        for s, subset in enumerate(subsets):
            step(f"kept and dropped images of {r.name}")
            suffix = f"_subset{s}" if len(subsets) > 1 else ""
            save(fig_kept_dropped(r, subset, grid), f"kept_dropped_{_slug(r.name)}{suffix}.png",
                 f"{r.name}: images kept and dropped by its {subset.what}",
                 "Top block: images the subset keeps (green frame); bottom block: images it drops (red), each drawn "
                 "at random, with their boxes (one colour per class, legend below) and their number of boxes.")
    box_counts = _box_counts(runs, notes)
    if box_counts is not None and box_counts.shares:
        step("boxes per class")
        save(fig_box_shares(box_counts.shares, box_counts.names, box_counts.total), "box_counts.png",
             "Boxes per class kept by each run",
             "Top: the boxes of each class in the whole training set (from the YOLO label files). Bottom: the share "
             "of them in the images each run kept (an offline subset), or back-propagated per epoch on average "
             "(online selection), against full training; dashed: the run's share of all boxes. A class well below "
             "its run's line is starved by that subset. The table 'Boxes per class' gives the numbers.")
    for r in runs:
        m = r.manifest
        if m is None:
            continue
        if r.images is None:
            notes.append(f"{r.name}: has a manifest ({m.get('method')}) but no dataset to show it on")
            continue
        if manifest_extractor_key(m) is None:
            notes.append(f"{r.name}: the {m.get('method')} subset used no embeddings, so there is no prototype or "
                         "projection figure")
            continue
        step(f"embeddings of {r.name}")
        emb, why_not = run_embeddings(r, cache_dir, compute=embed_missing, progress=embed_progress)
        if emb is None:
            notes.append(f"{r.name}: IDS figures left out: {why_not}")
            continue
        if emb.shape[0] != len(r.images):
            notes.append(f"{r.name}: IDS figures left out: {emb.shape[0]} embeddings for {len(r.images)} samples")
            continue
        slug = _slug(r.name)
        if m.get("method") == "ids":
            step(f"class prototypes of {r.name}")
            more = len(r.images.class_names) > 10
            save(fig_ids_prototypes(r, emb), f"ids_prototypes_{slug}.png",
                 f"{r.name}: class prototypes with their nearest and farthest images (Figure 6)",
                 "Per class: the prototype (the sample nearest the class centroid in the extractor's feature "
                 "space), the images nearest to the centroid and the farthest ones. Frame: green kept by the "
                 "subset, red dropped." + (" First 10 classes shown." if more else ""))
        step(f"projection of {r.name}")
        save(fig_ids_pca(r, emb), f"ids_pca_{slug}.png", f"{r.name}: embeddings in 2-D, kept against dropped",
             "The embeddings the subset was selected from, projected on their first two principal components; "
             "green kept, red dropped (per subset), and the same points coloured by class.")
    for r in runs:
        notes.extend(f"{r.name}: {n}" for n in r.notes)
    report = Report(out=out, runs=runs, baseline=base, table=table, figures=figures, notes=notes, files=files,
                    class_name=chosen, box_counts=box_counts)
    files.append(write_text(out / "index.html", render_html(report)))
    return report
