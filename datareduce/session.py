"""One reduction session: what every host does around its training loop, done once.

A host (a trainer or a patched upstream script) runs the forward and backward passes; the session does the rest
of an epoch's data reduction, the same way on every host:

* **prepares the epoch** (:meth:`ReductionSession.start_epoch`): the offline subset of this epoch
  (:class:`SubsetSchedule`: the manifest's subsets, the γ switch from one to the next) put in place through the
  host's adapter, then the method's own preparation (an online selection planning the epoch from cached losses,
  InfoBatch's or RS2's visiting plan) through the host's sampler;
* **books** what the epoch did (:meth:`ReductionSession.trained`, :meth:`ReductionSession.stepped`): samples
  back-propagated (and the selection counts), training batches, optimizer steps, the loop's wall time, the
  training loss; the per-sample losses of each step go to the method (InfoBatch's scores, ADONIS's loss cache);
* **writes the epoch record** (:meth:`ReductionSession.end_training`, :meth:`ReductionSession.write_epoch`): the
  job's accounting summed over the ranks (with the kept samples per class where a sample has one class) in the
  one schema of :mod:`datareduce.run_files`;
* **saves and restores** its state (:meth:`ReductionSession.state_dict`): every rank's selection state
  (:mod:`datareduce.selection_state`), the selection counts and the offline subset.

The host adapter says what only the host knows: its full training set's size and labels, how to put an offline
subset in place, how large the training set is now, and the sampler whose visiting order a method may set (see
:class:`ReductionSession`). The method (``selection``) is the object that turns an epoch's forward batches into
training batches (``prepare_epoch``, ``batches``, ``after_step``, ``epoch_record``, ``state_dict``).
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
import torch

from . import distributed
from . import manifest as manifest_mod
from . import records
from ._validate import check_number
from .run_files import RunFiles
from .selection_state import gather_states, restore_state


LEGACY_STATE_KEYS = ("reducer", "online")  # classify.py and the vision hooks; the YOLO trainer and yolov5 hooks


class SubsetSchedule:
    """Which offline subset of ``manifest`` each epoch trains on: the last subset whose ``from_epoch`` has come
    (the first before any has), as sorted positions in the full training listing ``keys``, which the manifest
    must have been made from."""

    def __init__(self, manifest: dict, keys: Sequence[str]):
        manifest_mod.verify(manifest, keys)
        where = {str(k): i for i, k in enumerate(keys)}
        subsets = manifest["subsets"]
        self.starts = [int(s["from_epoch"]) for s in subsets]
        self.modes = [s.get("mode") for s in subsets]
        self.positions = [np.sort(np.fromiter((where[k] for k in s["kept"]), dtype=np.int64, count=len(s["kept"])))
                          for s in subsets]

    def index_at(self, epoch: int) -> int:
        """The position in the manifest of the subset trained in ``epoch``."""
        return max((i for i, start in enumerate(self.starts) if start <= epoch), default=0)

    def positions_at(self, epoch: int) -> np.ndarray:
        """The full-listing positions of the samples ``epoch`` trains on."""
        return self.positions[self.index_at(epoch)]

    def largest(self) -> int:
        """The most samples any epoch trains on (a bound for the host's batch count)."""
        return max(len(p) for p in self.positions)


class EpochBook:
    """What one rank trained in one epoch: samples, batches, optimizer steps, the loss summed over the samples,
    and the wall time since it was opened."""

    def __init__(self):
        self.start = time.perf_counter()
        self.samples = self.batches = self.steps = 0
        self.loss_sum = 0.0

    def seconds(self) -> float:
        return time.perf_counter() - self.start


class ReductionSession:
    """The data reduction of one run, driven by its host epoch by epoch.

    ``cfg``: the run's :class:`~datareduce.config.ReduceConfig`; ``folder``: where its run files go; ``data``: the
    host adapter, with

    * ``num_samples`` — the full training set's size (the selection counts' length);
    * ``labels`` — the class of each sample of the full set (None where a sample has no single class), and
      ``num_classes``: the kept samples per class are counted from them;
    * ``use_subset(positions)`` — put the offline subset (full-set positions; None: all) in place;
    * ``num_train()`` — how many samples the training set holds now;
    * ``sampler`` — what a method's ``prepare_epoch`` sets the visiting order of (None: the host plans nothing).

    ``epochs``: the run's (needed where a method prepares its epochs: the last one trains what it still holds);
    ``main``: whether this rank writes. ``manifest`` (with ``keys``, the full training listing's sample ids) is the
    offline subset; ``selection`` the method, which may also be attached later (:meth:`attach`): state restored
    before it is attached waits for it. ``books_steps``: whether the host books its optimizer steps
    (:meth:`stepped`); a host whose upstream loop decides when to step (YOLOv5's) records none.
    """

    def __init__(self, cfg, folder, data, epochs: Optional[int] = None, *, main: bool = True,
                 manifest: Optional[dict] = None, keys: Optional[Sequence[str]] = None, selection=None,
                 books_steps: bool = True):
        self.cfg = cfg
        self.data = data
        self.epochs = None if epochs is None else check_number("epochs", epochs, low=1, integer=True)
        self.books_steps = bool(books_steps)
        self.files = RunFiles(folder, data.num_samples, cfg, main=main)
        self.manifest: Optional[dict] = None
        self.schedule: Optional[SubsetSchedule] = None
        self.subset: Optional[int] = None  # which subset of the schedule is in place
        self.selection = None
        self.pending: Optional[list] = None  # selection states restored before the selection was attached
        self.pending_kwargs: dict = {}
        self.states: list = []  # every rank's selection state when the last epoch ended (state_dict's)
        self.book: Optional[EpochBook] = None
        self.epoch: Optional[int] = None
        if manifest is not None:
            self.use_manifest(manifest, keys)
        if selection is not None:
            self.attach(selection)

    def use_manifest(self, manifest: dict, keys: Sequence[str]) -> None:
        """Train on the offline subset(s) of ``manifest``, made of the full training listing's sample ids
        ``keys`` (a host that builds the session before it has chosen them)."""
        self.manifest = manifest
        self.schedule = SubsetSchedule(manifest, keys)
        self.subset = None

    # ------------------------------------------------------------------------------------------- the method
    def attach(self, selection) -> None:
        """Drive ``selection`` (the method) from now on; it takes back the state :meth:`load_state_dict` held."""
        self.selection = selection
        if self.pending is not None:
            restore_state(selection, self.pending, **self.pending_kwargs)
            self.pending, self.pending_kwargs = None, {}

    def last(self, epoch: int) -> bool:
        """Whether ``epoch`` is the run's last (an online selection then trains what it still holds)."""
        if self.epochs is None:
            raise ValueError("a session that prepares its method's epochs needs the run's epochs")
        return epoch == self.epochs - 1

    # ------------------------------------------------------------------------------------------- each epoch
    def use_subset(self, epoch: int) -> bool:
        """Put the offline subset of ``epoch`` in place (the γ switch); True when it changed."""
        if self.schedule is None:
            return False
        index = self.schedule.index_at(epoch)
        if index == self.subset:
            return False
        self.data.use_subset(self.schedule.positions[index])
        self.subset = index
        return True

    def start_epoch(self, epoch: int) -> bool:
        """Prepare ``epoch``: its offline subset in place, a fresh book (its clock starts now), and the method's
        preparation (planning is part of the epoch's cost). True when the offline subset changed. An epoch that
        ended without a record is trained again: what its first try booked is forgotten."""
        self.files.forget_epoch()
        changed = self.use_subset(epoch)
        self.epoch, self.book = epoch, EpochBook()
        if self.selection is not None and self.data.sampler is not None:
            self.selection.prepare_epoch(epoch, self.data.sampler, self.last(epoch))
        return changed

    def batches(self, loader):
        """The epoch's training batches from its forward batches ``loader``: the method's ``(batch, loss weights
        or None)``."""
        return self.selection.batches(loader, self.epoch, self.last(self.epoch))

    def trained(self, indices: torch.Tensor, losses: Optional[torch.Tensor] = None,
                loss: Optional[float] = None) -> None:
        """Book a training batch of the samples ``indices`` (full-set): counted for the selection counts, and
        its per-sample ``losses`` handed to the method (every rank calls this for every batch); ``loss`` is the
        batch's mean training loss, for the epoch's."""
        book = self.book
        n = len(indices)
        book.samples += n
        book.batches += 1
        if loss is not None:
            book.loss_sum += float(loss) * n
        self.files.count(indices)
        if losses is not None and self.selection is not None:
            self.selection.after_step(indices, losses)

    def stepped(self) -> None:
        """Book an optimizer step."""
        self.book.steps += 1

    def end_training(self, **extra) -> Optional[float]:
        """After the epoch's last training batch, on every rank: the job's accounting to the run files — the
        method's record (summed over the ranks), the samples it kept per class (where a sample has one class and
        the method keeps some), the slowest rank's loop time, the optimizer steps (the same on
        every rank; each rank's listed under DDP), batches and samples summed over the ranks, the training set's
        size, the offline subset's mode — with the host's ``extra``; and gathers every rank's selection state for
        :meth:`state_dict` (a host may save its checkpoint on the main rank alone). Returns the epoch's mean
        training loss (None when nothing was trained or no loss booked)."""
        book = self.book
        seconds = max(distributed.gather_objects(book.seconds()))
        steps = [int(s) for s in distributed.gather_objects(book.steps)]
        batches, backprop, loss_sum = distributed.all_sum([book.batches, book.samples, book.loss_sum])
        selection = dict(self.selection.epoch_record()) if self.selection is not None else {}
        kept = getattr(self.selection, "kept_indices", None)
        if kept is not None and self.data.labels is not None:
            per_class = distributed.all_sum(np.bincount(self.data.labels[kept().numpy()],
                                                        minlength=self.data.num_classes))
            selection["kept_per_class"] = [int(c) for c in per_class]
        selection.setdefault("forward_samples", int(backprop))  # without a method, every sample visited is trained
        selection.update(train_time_s=seconds, optimizer_steps=steps[0] if self.books_steps else None,
                         train_batches=int(batches), samples_backprop=int(backprop))
        if len(steps) > 1 and self.books_steps:
            selection["optimizer_steps_per_rank"] = steps
        if self.schedule is not None:  # which offline subset the epoch trained (IDS: easy, then hard from γ)
            selection["subset"] = self.schedule.modes[self.subset]
        self.files.end_training({**selection, "train_samples": self.data.num_train(), **extra})
        self.states = gather_states(self.selection)
        return loss_sum / backprop if backprop else None

    @property
    def awaiting_record(self) -> bool:
        """Whether an epoch has ended (:meth:`end_training`) and waits for its record."""
        return self.files.accounting is not None

    def write_epoch(self, epoch: int, metrics: Optional[dict] = None) -> dict:
        """The epoch's record (the accounting of :meth:`end_training` and the host's ``metrics``), appended to the
        log, and the selection counts saved; returns the record."""
        return self.files.write_epoch(epoch, metrics)

    # ------------------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        """What the host's checkpoint carries: every rank's selection state when the last epoch ended (or as
        restored), the selection counts and the offline subset."""
        return {"selection": self.states, **self.files.state_dict(), "manifest": self.manifest,
                "reduce": self.cfg.describe()}

    def started_settings(self, state: Optional[dict]) -> Optional[dict]:
        """The data reduction (:meth:`~datareduce.config.ReduceConfig.describe`) of the run that saved ``state``
        (:meth:`state_dict`'s), to compare a resumed run's with (:func:`datareduce.flags.check_resume`): the
        state's own, else (a state of an earlier release) the ``run`` record of the log in this session's folder;
        None where neither says."""
        if state and state.get("reduce") is not None:
            return state["reduce"]
        log = self.files.folder / records.LOG_NAME
        runs = [r for r in records.read(log) if r.get("type") == "run"] if log.is_file() else []
        return runs[0].get("reduce") if runs else None

    def load_state_dict(self, state: Optional[dict], **restore_kwargs) -> dict:
        """Restore :meth:`state_dict`'s ``state``: this rank's selection state (``restore_kwargs`` go to the
        method's ``load_state_dict``; held until :meth:`attach` when no method is attached yet) and the counts.
        Returns what was restored (``selection_state_restored``, ``selection_counts_restored``)."""
        state = state or {}
        states = state.get("selection")
        if states is None:  # a checkpoint of an earlier release: the same states under each host's old name
            states = next((state[k] for k in LEGACY_STATE_KEYS if state.get(k) is not None), None)
        restored = bool(states)
        self.states = list(states or [])
        if self.selection is None:
            self.pending, self.pending_kwargs = (states or None), restore_kwargs
        else:
            restored = restore_state(self.selection, states, **restore_kwargs)
        return {"selection_state_restored": restored,
                "selection_counts_restored": self.files.load_state_dict(state)}
