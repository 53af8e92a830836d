"""What ``datareduce report`` does: read trainer run folders, compute the paper's Table A1 columns, draw the figures,
write an offline ``index.html``. No printing (the console face is :mod:`datareduce.cli`); matplotlib's Agg canvas
only (no pyplot, no display); nothing is fetched.

A run folder is what ``trainers/classify.py`` and ``trainers/yolo_train.py`` write to their output dir, and the
patched upstream scripts to the ``datareduce/`` subfolder of theirs (:mod:`datareduce.run_files`; either folder
may be given):

* ``log.jsonl`` (required) — JSON lines with a ``"type"``: one ``run`` record (``args``: the classification
  command line or Ultralytics' arguments; ``reduce``: :meth:`datareduce.config.ReduceConfig.describe`;
  ``num_train``, ``world_size``, …), an optional ``ids`` record (offline selection time), one ``epoch`` record
  per epoch (``train_time_s``, ``cumulative_train_time_s``, ``samples_backprop``, ``samples_scored``,
  ``forward_samples``, ``keep_fraction``, and ``top1`` or ``map50_95``), and a final ``summary``. Run folders
  of older YOLO trainers hold a ``config`` record (``reduce``) instead of ``run``; it is read the same way.
* ``selection_counts.npy`` (optional) — uint16, one entry per sample of the full training set: how often
  the sample was back-propagated.
* ``manifest.json`` (optional) — the offline subset (:mod:`datareduce.manifest`); ``ids_manifest.json`` in run
  folders of older YOLO trainers.

The images shown come from the dataset named by the run's ``args.data_path`` (classification; opened as the
trainer opens it, :func:`datareduce.datasets.load_datasets`) or by the ``data:`` YAML in Ultralytics'
``args.yaml`` (detection, cut to its ``fraction``), or from ``--data-path``; the listing is checked against the
manifest's fingerprint and the length of the counts array, so a report never shows the images of another dataset.

IDS figures need the embeddings: they are looked up in the embedding caches (``--cache-dir``, the run's own,
the default ``$DATAREDUCE_CACHE/embeddings`` or ``~/.cache/datareduce/embeddings``)
by the manifest's dataset fingerprint and extractor key, and recomputed only if the same extractor (same key:
architecture, weights, preprocessing) can be rebuilt here.

Detection images have their boxes drawn from their YOLO label files (``images/…/x.jpg`` ↔ ``labels/…/x.txt``),
and each run's kept boxes are counted per class against the whole training set's.

The modules: :mod:`.runs` reads and checks run folders, :mod:`.images` opens their training images, :mod:`.boxes`
reads the boxes of detection images, :mod:`.table` compares runs with the baseline, :mod:`.selection` says what
each run selected (for detection, the boxes per class it kept), :mod:`.embeddings`
finds the IDS embeddings, :mod:`.canvas`, :mod:`.plots` and :mod:`.grids` draw, :mod:`.page` writes the HTML and
:mod:`.command` puts it together (:func:`build`, the entry point).
"""
from .command import build

__all__ = ["build"]
