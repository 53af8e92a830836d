"""The per-epoch JSON-lines log that every host writes, and the run summary computed from it.

One line per event, flushed and fsynced as it is written, so a crash loses at most the line being written.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .atomic import write_text

LOG_NAME = "log.jsonl"


def read(path) -> list:
    """All records of a log file (a torn last line from a crash is ignored)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


class RunLog:
    """Append-only JSON-lines log in ``out_dir``. With ``resume_epoch`` set, records of that epoch and later
    (left by the interrupted run) are dropped first, so a resumed run's log reads like an uninterrupted one.
    Epoch records get ``cumulative_train_time_s`` (the running sum of ``train_time_s``) unless they carry it."""

    def __init__(self, out_dir, resume_epoch=None, name: str = LOG_NAME):
        self.path = Path(out_dir) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_epoch is not None and self.path.exists():
            kept = [r for r in read(self.path) if r.get("type") != "summary"
                    and not (r.get("type") == "epoch" and r.get("epoch", -1) >= resume_epoch)]
            write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        elif resume_epoch is None and self.path.exists():
            self.path.unlink()
        done = self.records("epoch")
        self.cumulative = done[-1].get("cumulative_train_time_s", 0.0) if done else 0.0

    def write(self, kind: str, record: dict) -> dict:
        """Append one record of type ``kind`` (``epoch``, ``ids``, ``summary``, ...)."""
        record = {"type": kind, **record}
        if kind == "epoch" and "train_time_s" in record:
            self.cumulative = record.setdefault("cumulative_train_time_s", self.cumulative + record["train_time_s"])
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return record

    def records(self, kind=None) -> list:
        out = read(self.path) if self.path.exists() else []
        return [r for r in out if kind is None or r.get("type") == kind]


def summarize(epochs: list, metric: str = "top1") -> dict:
    """Run totals from epoch records: loop time, samples scored and back-propagated, steps, final/best metric."""
    if not epochs:
        return {"epochs": 0}
    values = [e[metric] for e in epochs if e.get(metric) is not None]
    totals = {key: _total(epochs, key) for key in ("train_time_s", "samples_scored", "samples_backprop",
                                                   "forward_samples", "optimizer_steps")}
    return {"epochs": len(epochs), **totals, f"final_{metric}": values[-1] if values else None,
            f"best_{metric}": max(values) if values else None}


def _total(epochs: list, key: str):
    """The sum of ``key`` over the epochs that have it; None when none has (a host that cannot count it)."""
    values = [e[key] for e in epochs if e.get(key) is not None]
    return sum(values) if values else None
