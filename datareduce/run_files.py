"""The run files of a training run, named and written the same way by every host: ``log.jsonl`` (the records),
``manifest.json`` (the offline subset) and ``selection_counts.npy`` (how often each sample of the full training
set was back-propagated).

:class:`RunFiles` owns the folder: the log's ``run`` record (the settings), ``ids`` record (the offline subset),
one ``epoch`` record per epoch in one schema (:func:`epoch_record`) and the closing ``summary``; the manifest;
and the selection counts, which every rank adds to, the ranks sum at each epoch's end, and the host's checkpoint
carries (:meth:`RunFiles.state_dict`). Files are replaced atomically and the log is appended line by line
(:mod:`datareduce.records`), so a crash leaves nothing half-written, and a resumed run appends exactly what the
uninterrupted one would have. Only the main rank writes.

A host whose output folder also holds the upstream script's own files (the torchvision reference's checkpoints,
YOLOv5's ``weights/`` and ``results.csv``) keeps its run files in the :data:`SUBFOLDER` of it; :func:`find` looks
in both places.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import distributed, records
from . import manifest as manifest_mod
from .config import ReduceConfig
from .describe import method_name
from .selection_counts import SelectionCounts

MANIFEST_NAME = "manifest.json"
COUNTS_NAME = "selection_counts.npy"
SUBFOLDER = "datareduce"
ONCE = ("run", "ids")  # the records of the run's start: a resumed run keeps its log's and writes none again
# Every epoch record has these keys (None where a method has no such number), then the method's and the host's own.
EPOCH_KEYS = ("epoch", "method", "train_samples", "forward_samples", "samples_scored", "samples_selected",
              "samples_backprop", "keep_fraction", "mean_loss_all", "mean_loss_kept", "kept_per_class",
              "train_batches", "optimizer_steps", "train_time_s", "score_time_s", "select_time_s")
REQUIRED = ("forward_samples", "samples_backprop", "train_time_s")


def find(folder) -> Path:
    """The folder that holds the run files of the run folder ``folder``: itself, or its :data:`SUBFOLDER` when
    only that holds a log (a patched upstream script's output folder)."""
    folder = Path(folder)
    if not (folder / records.LOG_NAME).is_file() and (folder / SUBFOLDER / records.LOG_NAME).is_file():
        return folder / SUBFOLDER
    return folder


def epoch_record(epoch: int, method: str, selection: dict, metrics: Optional[dict] = None) -> dict:
    """One epoch's record in the schema every host writes: the keys of :data:`EPOCH_KEYS`, filled from
    ``selection`` — the epoch's accounting for the whole job (the training set's size, samples visited, scored,
    selected and back-propagated, keep fraction, loss means, per-class kept counts where samples have one class,
    training batches and optimizer steps, timings) with the method's own numbers (``planned``, ``buffered``,
    ``pruned_samples`` …) — then the host's ``metrics`` (``top1``, ``map50_95``, ``lr`` …), which may not reuse a
    selection key.

    A method without online selection trains every sample it visits: ``samples_selected`` defaults to
    ``forward_samples``, ``samples_scored`` to 0 and ``keep_fraction`` to selected over visited."""
    missing = [k for k in REQUIRED if selection.get(k) is None]
    if missing:
        raise ValueError(f"an epoch's accounting needs {', '.join(missing)}")
    metrics = metrics or {}
    clash = sorted(set(metrics) & (set(EPOCH_KEYS) | set(selection)))
    if clash:
        raise ValueError(f"host metrics may not replace the epoch's accounting: {', '.join(clash)}")
    record = dict.fromkeys(EPOCH_KEYS)
    record.update(selection, epoch=int(epoch), method=method)
    if record["samples_selected"] is None:
        record["samples_selected"] = record["forward_samples"]
    if record["samples_scored"] is None:
        record["samples_scored"] = 0
    if record["keep_fraction"] is None and record["forward_samples"]:
        record["keep_fraction"] = record["samples_selected"] / record["forward_samples"]
    record.update(metrics)
    return record


def epoch_line(record: dict, unit: str = "samples") -> str:
    """The one console line a host prints for the epoch record ``record`` (of :func:`epoch_record`): the method,
    the ``unit`` (samples, images) it kept of those it visited with the keep fraction (None when it visited
    none), and what it scored and trained in how many batches."""
    keep = record["keep_fraction"]
    return (f"datareduce: epoch {record['epoch']} {record['method']} kept {record['samples_selected']}/"
            f"{record['forward_samples']} {unit} ({keep if keep is None else round(keep, 3)}), scored "
            f"{record['samples_scored']}, trained {record['samples_backprop']} in {record['train_batches']} batches")


class RunFiles:
    """The run files of one run in ``folder``, for a training set of ``num_samples`` samples and the data
    reduction ``cfg``. Every rank makes one and counts; only ``main`` writes.

    Records made before :meth:`open` wait for it (a host may choose its offline subset before it knows whether
    it resumes); the manifest is written at once; the counts are saved with each epoch record."""

    def __init__(self, folder, num_samples: int, cfg: ReduceConfig, main: bool = True):
        self.folder = Path(folder)
        self.cfg = cfg
        self.method = method_name(cfg)
        self.main = main
        self.counts = SelectionCounts(num_samples)
        self.log: Optional[records.RunLog] = None
        self.waiting: list = []
        self.accounting: Optional[dict] = None
        self.counts_before: Optional[np.ndarray] = None  # the counts before the last epoch ended (forget_epoch)
        self.wrote_manifest = False

    def open(self, args: dict, resume_epoch: Optional[int] = None, **facts) -> None:
        """Start the log with the ``run`` record: the host's flags (``args``; values that are not JSON are left
        out), the data reduction, the training set's size, the world size, and what the host knows of its data
        and devices (``facts``: ``dataset``, ``num_classes``, ``device`` …); then the records made so far.

        A fresh start (``resume_epoch`` None) removes the run files an earlier run left in the folder; a run
        resumed at ``resume_epoch`` keeps them (its log's ``run`` record too) and drops the records of the epochs
        it redoes."""
        if not self.main:
            return
        if resume_epoch is None:
            (self.folder / COUNTS_NAME).unlink(missing_ok=True)
            if not self.wrote_manifest:
                (self.folder / MANIFEST_NAME).unlink(missing_ok=True)
        self.log = records.RunLog(self.folder, resume_epoch=resume_epoch)
        self.write("run", {"args": jsonable_args(args), "reduce": self.cfg.describe(),
                           "num_train": len(self.counts.counts), "world_size": distributed.world_size(), **facts})
        for kind, record in self.waiting:
            self.write(kind, record)
        self.waiting = []

    def write(self, kind: str, record: dict) -> None:
        """Append a record of type ``kind`` (at :meth:`open` if the log is not open yet). A ``run`` or ``ids``
        record is written once per run: not again by a resumed run whose log holds one."""
        if not self.main:
            return
        if self.log is None:
            self.waiting.append((kind, record))
        elif kind not in ONCE or not self.log.records(kind):
            self.log.write(kind, record)

    def records(self, kind: Optional[str] = None) -> list:
        return self.log.records(kind) if self.log is not None else []

    # ------------------------------------------------------------------------------------------- the offline subset
    def write_manifest(self, manifest: dict) -> None:
        """``manifest.json``: the offline subset(s) the run trains on."""
        if self.main:
            manifest_mod.write(self.folder / MANIFEST_NAME, manifest)
            self.wrote_manifest = True

    def offline_subset(self, manifest: dict, time_s: float, source=None, embed_time_s: Optional[float] = None,
                       select_time_s: Optional[float] = None) -> None:
        """The run's offline subset: ``manifest.json`` and the ``ids`` record — how many samples each subset keeps
        from which epoch, and what it cost (``time_s`` in all; ``embed_time_s`` and ``select_time_s`` where the
        host measures them); ``source`` is the manifest file it was read from (None: made by this run)."""
        self.write_manifest(manifest)
        subsets = manifest["subsets"]
        self.write("ids", {"method": manifest["method"], "extractor": manifest.get("extractor"),
                           "num_samples": manifest["dataset"]["num_samples"],
                           "num_kept": [s["num_kept"] for s in subsets],
                           "from_epoch": [s["from_epoch"] for s in subsets],
                           "source": None if source is None else str(source), "time_s": _seconds(time_s),
                           "embed_time_s": _seconds(embed_time_s), "select_time_s": _seconds(select_time_s)})

    # ------------------------------------------------------------------------------------------- each epoch
    def count(self, indices: torch.Tensor) -> None:
        """Samples (full-set indices) this rank back-propagated."""
        self.counts.add(indices)

    def end_training(self, selection: dict) -> None:
        """After the epoch's last training batch, on every rank: sum its counts over the ranks, and keep its
        accounting (``selection``, the job's: see :func:`epoch_record`) for :meth:`write_epoch`."""
        self.counts_before = self.counts.counts.copy()
        self.counts.end_epoch()
        self.accounting = dict(selection)

    def forget_epoch(self) -> None:
        """Forget what the epoch being trained counted so far, and undo the last :meth:`end_training` whose epoch
        has no record yet: a host that trains an epoch again (Ultralytics after a NaN loss or an out-of-memory
        retry) counts it once."""
        self.counts.drop_epoch()
        if self.accounting is not None:
            self.counts.counts = self.counts_before
            self.accounting = None

    def write_epoch(self, epoch: int, metrics: Optional[dict] = None) -> dict:
        """The epoch's record (:func:`epoch_record` of the accounting :meth:`end_training` kept and the host's
        ``metrics``), appended to the log, and ``selection_counts.npy`` saved; returns the record."""
        if self.accounting is None:
            raise RuntimeError(f"epoch {epoch}: write_epoch needs end_training after the epoch's last batch")
        record = epoch_record(epoch, self.method, self.accounting, metrics)
        self.accounting = None
        if self.main:
            if self.log is None:
                raise RuntimeError("RunFiles.open must come before the first epoch record")
            self.counts.save(self.folder / COUNTS_NAME)
            record = self.log.write("epoch", record)
        return record

    def write_summary(self, metric: str, **extra) -> Optional[dict]:
        """The closing ``summary`` record, returned: the totals over the epoch records (:func:`records.summarize`,
        final and best ``metric``), the method, the offline selection's time, and the host's ``extra``."""
        if not self.main:
            return None
        summary = records.summarize(self.records("epoch"), metric=metric)
        summary.update(method=self.method, ids_time_s=sum(r.get("time_s") or 0.0 for r in self.records("ids")),
                       **extra)
        self.write("summary", summary)
        return summary

    # ------------------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        """What the host's checkpoint carries: the selection counts so far (a tensor: ``weights_only`` loads it)."""
        return {"selection_counts": torch.from_numpy(self.counts.counts.copy())}

    def load_state_dict(self, state: Optional[dict]) -> bool:
        """Restore the counts of :meth:`state_dict`; False (nothing restored) when ``state`` has none for a
        training set of this size."""
        counts = (state or {}).get("selection_counts")
        if counts is None or len(counts) != len(self.counts.counts):
            return False
        self.counts.counts = np.asarray(counts, dtype=np.uint16).copy()
        return True


def _seconds(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(float(value), 4)


def jsonable_args(args: dict) -> dict:
    """The arguments a log can hold: those whose values JSON can write (paths as strings, callables dropped)."""
    return {k: v for k, v in args.items() if _jsonable(v)}


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
