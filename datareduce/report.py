"""What ``datareduce report`` does: read trainer run folders, compute the paper's Table A1 columns, draw the figures,
write an offline ``index.html``. No printing (the console face is :mod:`datareduce.cli`); matplotlib's Agg canvas
only (no pyplot, no display); nothing is fetched.

A run folder is what ``trainers/classify.py`` and ``trainers/yolo_train.py`` write to their output dir:

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
"""
from __future__ import annotations

import html
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from . import manifest as manifest_mod
from . import metrics as metrics_mod
from .atomic import write_bytes, write_text
from .records import LOG_NAME
from .paths import embeddings_dir

COUNTS_NAME = "selection_counts.npy"
MANIFEST_NAMES = ("manifest.json", "ids_manifest.json")  # both trainers; older YOLO trainers wrote the second
CONFIG_TYPES = ("run", "config")  # the record holding the run's settings; older YOLO trainers wrote "config"
METRICS = ("top1", "map50_95", "map50")  # the first one an epoch record has is the run's quality metric
METRIC_LABEL = {"top1": "top-1 accuracy (%)", "map50_95": "mAP50-95 (%)", "map50": "mAP50 (%)"}
DROP_PP = 5.0
BUSY_RATIO = 1.25  # the same work taking this much longer (or shorter) in one run than in another: not comparable
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]
KEPT_COLOR, DROPPED_COLOR = "#2ca02c", "#d62728"


class RunDirError(ValueError):
    """A folder that is not a readable datareduce run: missing, corrupt or written by something else."""


# ============================================================================================ reading runs
class Images:
    """The full training set of a run, in dataset-index order: sample ids, labels, class names, pixels.

    Built from a classification dataset of :mod:`datareduce.datasets` (:meth:`from_dataset`) or from a list of
    image files (:meth:`from_files`, detection: one group, no classes)."""

    def __init__(self, keys, labels, class_names, source: str, root=None, files=None, dataset=None,
                 cache_suffix: str = ""):
        self.keys = [str(k) for k in keys]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = [str(c) for c in class_names]
        self.source = source
        self.root = None if root is None else Path(root)
        self.files = files
        self.dataset = dataset
        self.cache_suffix = cache_suffix  # what the trainer appends to the listing fingerprint in the embedding cache

    @classmethod
    def from_dataset(cls, dataset, source: str) -> "Images":
        root = getattr(dataset, "root", None) or None
        files = [p for p, _ in dataset.samples] if hasattr(dataset, "samples") else None
        return cls(dataset.sample_keys(), dataset.targets, dataset.classes, source, root, files, dataset,
                   cache_suffix="|" + (str(root) if root else ""))

    @classmethod
    def from_files(cls, files, root, source: str) -> "Images":
        keys = [os.path.relpath(os.path.abspath(f), root) for f in files]
        return cls(keys, np.zeros(len(files), dtype=np.int64), ["all images"], source, root, list(files))

    def __len__(self) -> int:
        return len(self.keys)

    def image(self, i: int):
        """Sample ``i`` as an RGB PIL image."""
        from PIL import Image

        if self.files is not None:
            with Image.open(self.files[i]) as im:
                return im.convert("RGB")
        data = self.dataset.data[i]
        if hasattr(data, "numpy"):  # digits: a (1, H, W) float tensor in [0, 1]
            arr = (data[0].numpy() * 255).round().clip(0, 255).astype(np.uint8)
            return Image.fromarray(arr).convert("RGB")
        return Image.fromarray(np.asarray(data)).convert("RGB")

    def embed_inputs(self):
        """What :func:`datareduce.embed.embed` takes: file paths, or PIL images on demand."""
        return list(self.files) if self.files is not None else _LazyImages(self)


class _LazyImages:
    def __init__(self, images: Images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images.image(i)


@dataclass
class Run:
    """One run folder, read and checked."""

    path: Path
    name: str
    records: List[dict]
    epochs: List[dict]
    config: dict  # the run record (``args``, ``reduce``, …); empty when the log has none
    method: str  # e.g. "full", "adonis", "ids", "ids+adonis", "sb", "rpd"
    method_source: str  # where the method was read from
    metric: str
    counts: Optional[np.ndarray] = None
    manifest: Optional[dict] = None
    manifest_file: Optional[str] = None
    images: Optional[Images] = None
    data_path: Optional[str] = None
    notes: List[str] = field(default_factory=list)

    @property
    def is_full(self) -> bool:
        return self.method == "full"

    @property
    def detection(self) -> bool:
        return self.metric != "top1"

    @property
    def num_samples(self) -> Optional[int]:
        """Size of the full training set (from the counts, the manifest, the dataset or the run record)."""
        if self.counts is not None:
            return len(self.counts)
        if self.manifest is not None:
            return int(self.manifest["dataset"]["num_samples"])
        if self.images is not None:
            return len(self.images)
        n = self.config.get("num_train")
        if isinstance(n, int) and n > 0:
            return n
        if self.is_full:  # a full-data run's epochs see the whole training set
            sizes = [e.get("train_samples") or e.get("train_images") for e in self.epochs]
            sizes = [v for v in sizes if isinstance(v, int) and v > 0]
            return max(sizes) if sizes else None
        return None

    def trajectory(self, epochs: Optional[int] = None) -> List[tuple]:
        """(cumulative training-loop wall time in s, metric) per epoch that has the metric; mAP (a fraction in
        the log, as Ultralytics reports it) in %, so drops are in percentage points like accuracy's."""
        scale = 100.0 if self.metric.startswith("map") else 1.0
        out, t = [], 0.0
        for e in self.epochs[:epochs]:
            t = float(e["cumulative_train_time_s"]) if e.get("cumulative_train_time_s") is not None \
                else t + float(e.get("train_time_s") or 0.0)
            if e.get(self.metric) is not None:
                out.append((t, scale * float(e[self.metric])))
        return out

    @property
    def settings(self) -> str:
        """The parameters that tell runs of one method apart (from the run record's ``reduce``)."""
        reduce = self.config.get("reduce") if isinstance(self.config.get("reduce"), dict) else {}
        parts = []
        ids = reduce.get("ids")
        if isinstance(ids, dict):
            parts.append(f"IDS α={ids.get('alpha')} {ids.get('mode')}"
                         + (f" γ={ids['gamma']}" if ids.get("gamma") is not None else "")
                         + (f" K={ids['prototypes']}" if (ids.get("prototypes") or 1) > 1 else ""))
        ad = reduce.get("adonis")
        if isinstance(ad, dict):
            flags = [k for k in ("balance", "rescale") if ad.get(k)] + \
                    [f"{k}={ad[k]}" for k in ("anneal", "decay", "floor") if ad.get(k)]
            parts.append(f"ADONIS η={ad.get('eta')} θ={ad.get('theta')} α={ad.get('alpha')} σ={ad.get('sigma')} "
                         f"ω={ad.get('omega')}" + (f" ({', '.join(flags)})" if flags else ""))
        if reduce.get("alpha") is not None:
            parts.append(f"α={reduce['alpha']}")
        for k in ("sb_beta", "sb_staleness", "composer_keep", "infobatch_ratio", "infobatch_delta"):
            if reduce.get(k) is not None:
                parts.append(f"{k}={reduce[k]}")
        return "; ".join(parts)

    def total(self, key: str, epochs: Optional[int] = None) -> Optional[int]:
        values = [e.get(key) for e in self.epochs[:epochs]]
        return None if all(v is None for v in values) else int(sum(v or 0 for v in values))

    @property
    def preprocessing_s(self) -> Optional[float]:
        """Offline selection time (IDS / SSP / RPC / RPD), reported apart from the training loop."""
        recs = [r for r in self.records if r.get("type") == "ids"]
        if not recs:
            return None
        total = 0.0
        for r in recs:
            if r.get("time_s") is not None:
                total += float(r["time_s"])
            else:
                total += float(r.get("embed_time_s") or 0.0) + float(r.get("select_time_s") or 0.0)
        return total


def read_log(path: Path) -> List[dict]:
    """The records of a run log; a clear :class:`RunDirError` when it is not a datareduce log.

    A torn last line (a crash while writing it) is dropped, as :func:`datareduce.records.read` does; anything
    else that is not a JSON object with a ``"type"`` makes the whole log unreadable.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RunDirError(f"{path} is not a datareduce run log: it is not UTF-8 text (corrupt or foreign file)") \
            from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise RunDirError(f"{path} is empty: the run wrote no records (did it crash before its first epoch?)")
    records = []
    for k, (n, line) in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if k == len(lines) - 1 and records:
                break  # torn last line
            raise RunDirError(f"{path} line {n} is not valid JSON ({e.msg}): the log is corrupt") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("type"), str):
            raise RunDirError(f"{path} line {n} is not a datareduce record (a JSON object with a \"type\"): this "
                              "log was not written by trainers/classify.py or trainers/yolo_train.py")
        records.append(rec)
    return records


def _detect_method(config: dict, manifest: Optional[dict], epochs: List[dict], summary: Optional[dict]):
    """(method label, where it came from). The run record's ``reduce`` (ReduceConfig.describe) wins."""
    reduce = config.get("reduce")
    args = config.get("args") if isinstance(config.get("args"), dict) else {}
    if isinstance(reduce, dict) and "method" in reduce:
        base, ids, adonis, source = reduce["method"], reduce.get("ids") is not None, \
            reduce.get("adonis") is not None, "run record (reduce)"
    elif args and "reduce" in args:
        base = args.get("reduce") or "full"
        ids = bool(args.get("ids")) or any(args.get(f"ids_{k}") is not None
                                           for k in ("alpha", "mode", "gamma", "prototypes", "manifest"))
        adonis = bool(args.get("adonis")) or any(k.startswith("adonis_") and v is not None for k, v in args.items())
        source = "run record (args)"
    elif summary is not None and isinstance(summary.get("method"), str):
        return summary["method"], "summary record"
    elif manifest is not None:
        return str(manifest.get("method", "offline subset")), "manifest"
    else:
        scored = sum(e.get("samples_scored") or 0 for e in epochs)
        partial = any(e.get("keep_fraction") is not None and e["keep_fraction"] < 1 for e in epochs)
        if not scored and not partial:
            return "full", "inferred (no run record; nothing scored or dropped)"
        return "online selection", "inferred (no run record)"
    parts = (["ids"] if ids else []) + ([base] if base not in ("full", None) else []) + (["adonis"] if adonis else [])
    return "+".join(parts) or "full", source


def _find_counts(folder: Path) -> Optional[np.ndarray]:
    path = folder / COUNTS_NAME
    if not path.exists():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise RunDirError(f"{path} is not a readable .npy array ({e}): the per-sample selection counts are corrupt") \
            from None
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or arr.size == 0:
        raise RunDirError(f"{path} should hold one integer count per training sample (a 1-D uint16 array), "
                          f"found dtype {arr.dtype} and shape {arr.shape}")
    return arr.astype(np.int64)


def _find_manifest(folder: Path):
    """The run's manifest: ``manifest.json``, or ``ids_manifest.json`` (older YOLO trainers)."""
    for name in MANIFEST_NAMES:
        path = folder / name
        if not path.exists():
            continue
        try:
            m = manifest_mod.read(path)
            _ = m["dataset"]["fingerprint"], int(m["dataset"]["num_samples"]), m["subsets"][0]["kept"]
            return m, name
        except (KeyError, IndexError, TypeError) as e:
            raise RunDirError(f"{path} is a datareduce manifest with missing fields ({e})") from None
        except ValueError as e:
            raise RunDirError(str(e)) from None
    return None, None


def manifest_extractor_key(m: dict) -> Optional[str]:
    """The extractor key of a manifest (a string, or the ``key`` of a dict describing the extractor)."""
    ex = m.get("extractor")
    if isinstance(ex, dict):
        ex = ex.get("key")
    return ex if isinstance(ex, str) else None


def open_images(data_path: Optional[str]) -> Images:
    """The training set at ``data_path`` (None: the embedded digits), opened as the classification trainer does."""
    from .datasets import DigitsDataset, IndexedImageFolder, load_datasets

    if data_path is None:
        return Images.from_dataset(DigitsDataset(train=True), "embedded digits (scikit-learn)")
    try:
        return Images.from_dataset(load_datasets(data_path).train, str(data_path))
    except FileNotFoundError:
        root = Path(data_path).expanduser()
        folder = root / "train" if (root / "train").is_dir() else root
        if not folder.is_dir():
            raise
        try:
            return Images.from_dataset(IndexedImageFolder(folder), str(folder))
        except (FileNotFoundError, RuntimeError) as e:
            raise FileNotFoundError(f"no image dataset under {data_path}: {e}") from None


IMAGE_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"}


def _detection_candidates(data_yaml: Path):
    """(root, image files) pairs a YOLO data YAML may mean: its ``train`` images (a folder, a list of folders or
    a .txt list), relative to each plausible dataset root (``path`` as given, relative to the YAML, the YAML's
    folder). The caller keeps the one whose listing matches the manifest's fingerprint."""
    import yaml

    try:
        data = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise FileNotFoundError(f"cannot read the data YAML {data_yaml}: {e}") from None
    if not isinstance(data, dict) or "train" not in data:
        raise FileNotFoundError(f"{data_yaml} is not a YOLO data YAML (no 'train' entry)")
    here = data_yaml.parent
    roots = []
    for r in ([Path(str(data["path"])).expanduser()] if data.get("path") else []):
        roots += [r] if r.is_absolute() else [here / r]
    roots.append(here)
    train = data["train"] if isinstance(data["train"], list) else [data["train"]]
    out = []
    for root in roots:
        files = []
        for t in train:
            p = Path(str(t)).expanduser()
            p = p if p.is_absolute() else root / p
            if p.is_dir():
                files += [str(f) for f in p.rglob("*.*") if f.suffix.lower() in IMAGE_SUFFIXES]
            elif p.is_file() and p.suffix == ".txt":
                for line in p.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        f = Path(line.strip())
                        files.append(str(f if f.is_absolute() else p.parent / f))
        if files:
            out.append((root.resolve(), sorted(files)))
    return out


def train_fraction(files: list, fraction) -> list:
    """The training listing cut as Ultralytics' ``fraction=`` cuts it: a ratio (at least one image), an image
    count (an int), or a per-split list whose first entry is the training split's."""
    if isinstance(fraction, list):
        fraction = fraction[0] if fraction else 1.0
    if fraction is None or isinstance(fraction, bool) or fraction in (0, 1):
        return files
    count = fraction if isinstance(fraction, int) else max(1, round(len(files) * float(fraction)))
    return files[:count]


def open_detection_images(data, manifest: Optional[dict], fraction=1.0) -> Images:
    """The training images of a YOLO data YAML (or a folder holding ``data.yaml``), in the order Ultralytics
    lists them and cut to the run's ``fraction``; with a manifest, the listing whose ids match its fingerprint
    (else an error)."""
    path = Path(str(data)).expanduser()
    if path.is_dir():
        path = path / "data.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"data YAML {path} not found")
    candidates = _detection_candidates(path)
    if not candidates:
        raise FileNotFoundError(f"no training images found for {path}")
    for root, files in candidates:
        images = Images.from_files(train_fraction(files, fraction), root, str(path))
        if manifest is None or manifest_mod.dataset_fingerprint(images.keys) == manifest["dataset"]["fingerprint"]:
            return images
    raise ValueError(f"the training images of {path} do not match the run's manifest (fingerprint "
                     f"{manifest['dataset']['fingerprint'][:20]}…, {manifest['dataset']['num_samples']} images)")


def load_run(path, data_path=None, name: Optional[str] = None) -> Run:
    """Read and check one run folder. ``data_path`` overrides the dataset the run recorded.

    Raises :class:`RunDirError` for a folder that is not a datareduce run or whose files are corrupt, or whose
    files disagree with each other or with the dataset (counts length, manifest fingerprint).
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        raise RunDirError(f"run folder {folder} does not exist")
    if not folder.is_dir():
        raise RunDirError(f"{folder} is not a folder: give the output dir of a training run (it holds {LOG_NAME})")
    log = folder / LOG_NAME
    if not log.is_file():
        raise RunDirError(f"{folder} is not a datareduce run folder: it has no {LOG_NAME} (expected the "
                          "--output-dir of trainers/classify.py or the run folder of trainers/yolo_train.py)")
    records = read_log(log)
    epochs = [r for r in records if r["type"] == "epoch"]
    if not epochs:
        raise RunDirError(f"{log} has no epoch records: the run did not finish an epoch")
    bad = [r for r in epochs if not isinstance(r.get("epoch"), int)]
    if bad:
        raise RunDirError(f"{log}: an epoch record has no integer \"epoch\" field: {json.dumps(bad[0])[:200]}")
    metric = next((m for m in METRICS if any(isinstance(e.get(m), (int, float)) for e in epochs)), None)
    if metric is None:
        raise RunDirError(f"{log}: no epoch record holds an accuracy or mAP ({', '.join(METRICS)}): "
                          "nothing to report")
    config = {}
    for r in records:
        if r["type"] in CONFIG_TYPES:
            config.update({k: v for k, v in r.items() if k != "type"})
    summary = next((r for r in reversed(records) if r["type"] == "summary"), None)
    counts = _find_counts(folder)
    manifest, manifest_file = _find_manifest(folder)
    method, source = _detect_method(config, manifest, epochs, summary)
    run = Run(path=folder, name=name or folder.name, records=records, epochs=epochs, config=config, method=method,
              method_source=source, metric=metric, counts=counts, manifest=manifest, manifest_file=manifest_file)
    if not config:
        run.notes.append(f"{LOG_NAME} has no run record: the method was {source}")
    if manifest is not None and counts is not None and len(counts) != run.manifest["dataset"]["num_samples"]:
        raise RunDirError(f"{folder}: {COUNTS_NAME} has {len(counts)} entries but its manifest was made from "
                          f"{run.manifest['dataset']['num_samples']} samples: the files come from different runs")
    _attach_images(run, data_path)
    return run


def _ultralytics_args(run: Run) -> dict:
    """A detection run's Ultralytics arguments: its ``args.yaml``, else the run record's ``args``; {} if neither."""
    if (run.path / "args.yaml").is_file():
        import yaml

        try:
            y = yaml.safe_load((run.path / "args.yaml").read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            y = None
        if isinstance(y, dict):
            return y
    args = run.config.get("args")
    return args if isinstance(args, dict) else {}


def _recorded_data_path(run: Run):
    """(found, data path) from the run record (classification) or Ultralytics' ``args.yaml`` (detection);
    (False, None) when neither says."""
    args = run.config.get("args")
    if isinstance(args, dict) and "data_path" in args:
        return True, args["data_path"]
    if run.detection:
        data = _ultralytics_args(run).get("data")
        if data:
            return True, data
    return False, None


def _attach_images(run: Run, data_path) -> None:
    given = data_path is not None
    if run.detection and run.manifest is None and run.counts is None:
        return  # nothing per image to show
    if not given:
        found, data_path = _recorded_data_path(run)
        if not found:
            what = "args.yaml with data=" if run.detection else "args.data_path"
            run.notes.append(f"the run records no dataset ({what}): images are not shown; pass --data-path")
            return
    if data_path is not None and not Path(str(data_path)).expanduser().exists():
        if given:
            raise FileNotFoundError(f"--data-path {data_path} does not exist")
        run.notes.append(f"the dataset recorded by the run, {data_path}, is not on this machine: images are not "
                         "shown; pass --data-path")
        return
    try:
        if run.detection:
            images = open_detection_images(data_path, run.manifest, _ultralytics_args(run).get("fraction", 1.0))
        else:
            images = open_images(None if data_path is None else str(data_path))
    except (FileNotFoundError, ValueError) as e:
        if given:
            raise RunDirError(f"--data-path {data_path}: {e}") from None
        run.notes.append(f"cannot open the dataset {data_path} recorded by the run ({e}): images are not shown")
        return
    n = run.num_samples
    if n is not None and n != len(images):
        raise RunDirError(f"{run.path}: the run trained on {n} samples but the dataset at "
                          f"{images.source} has {len(images)}; pass the run's own training data with --data-path")
    if run.manifest is not None:
        try:
            manifest_mod.verify(run.manifest, images.keys)
        except manifest_mod.ManifestMismatch as e:
            raise RunDirError(f"{run.path}: {e}") from None
    run.images = images
    run.data_path = images.source


# ================================================================================================ numbers
def choose_baseline(runs: Sequence[Run], baseline: Optional[str] = None) -> Optional[Run]:
    """The full-data run the drop and boost columns are measured against: the one named by ``baseline`` (a run
    name or folder), else the first run whose method is ``full``; None when there is none."""
    if baseline is not None:
        for r in runs:
            if baseline in (r.name, str(r.path)) or Path(baseline).expanduser().resolve() == r.path.resolve():
                return r
        raise ValueError(f"--baseline {baseline!r} is none of the runs given: {', '.join(r.name for r in runs)}")
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


def backprop_share_per_epoch(run: Run) -> List[Optional[float]]:
    """Samples back-propagated in each epoch over the size of the full training set."""
    n = run.num_samples
    return [e["samples_backprop"] / n if n and e.get("samples_backprop") is not None else None for e in run.epochs]


def keep_fraction_per_epoch(run: Run) -> List[Optional[float]]:
    """The online selection rate: samples kept over samples that went through the forward pass."""
    out = []
    for e in run.epochs:
        if e.get("keep_fraction") is not None:
            out.append(float(e["keep_fraction"]))
        elif e.get("forward_samples") and e.get("samples_backprop") is not None:
            out.append(e["samples_backprop"] / e["forward_samples"])
        else:
            out.append(None)
    return out


def most_least(counts: np.ndarray, k: int, members: Optional[np.ndarray] = None, seed: int = 0):
    """Indices of the ``k`` most and the ``k`` least back-propagated samples (among ``members``); ties are
    broken at random (seeded), so a grid of never-selected samples is not just the first files."""
    idx = np.arange(len(counts)) if members is None else np.asarray(members)
    c = counts[idx]
    tie = np.random.default_rng(seed).random(len(idx))
    most = idx[np.lexsort((tie, -c))][:k]
    least = idx[np.lexsort((tie, c))]
    least = least[~np.isin(least, most)][:k]  # a small class: never the same image in both blocks
    return most, least


def kept_mask(manifest: dict, keys: Sequence[str], subset: int = 0) -> np.ndarray:
    """Boolean mask over the full set: which samples the manifest's ``subset`` keeps."""
    kept = set(manifest["subsets"][subset]["kept"])
    return np.fromiter((str(k) in kept for k in keys), dtype=bool, count=len(keys))


# ============================================================================================ embeddings
def default_cache_dirs(run: Run, cache_dir=None) -> List[Path]:
    dirs = []
    if cache_dir is not None:
        dirs.append(Path(cache_dir).expanduser())
    args = run.config.get("args") if isinstance(run.config.get("args"), dict) else {}
    embed = (run.config.get("reduce") or {}).get("embed") if isinstance(run.config.get("reduce"), dict) else None
    ex = (run.manifest or {}).get("extractor")
    for d in (args.get("ids_cache_dir"), (embed or {}).get("cache_dir"), ex.get("cache_dir") if isinstance(ex, dict)
              else None):
        if d:
            dirs.append(Path(d).expanduser())
    dirs.append(embeddings_dir())  # every trainer's default
    seen, out = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def find_cached_embeddings(manifest: dict, dirs: Sequence[Path]) -> Optional[np.ndarray]:
    """The cached embeddings a manifest was made from (matched by dataset fingerprint and extractor key)."""
    key = manifest_extractor_key(manifest)
    if key is None:
        return None
    fp, n = manifest["dataset"]["fingerprint"], int(manifest["dataset"]["num_samples"])
    for d in dirs:
        if not d.is_dir():
            continue
        for note_path in sorted(d.glob("*.json")):
            try:
                note = json.loads(note_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(note, dict) or note.get("key") != key:
                continue
            if str(note.get("fingerprint", "")).split("|")[0] != fp:
                continue
            try:
                arr = np.load(note_path.with_suffix(".npy"), allow_pickle=False)
            except (OSError, ValueError, EOFError):
                continue
            if arr.ndim == 2 and arr.shape[0] == n and np.isfinite(arr).all():
                return arr
    return None


def _parse_key(key: str):
    """(extractor name, image size) from an extractor key ``extractor/1|NAME|weights=…|size=N|…``."""
    parts = key.split("|")
    if len(parts) < 3 or not parts[0].startswith("extractor/"):
        return None, None
    size = next((int(p[5:]) for p in parts if p.startswith("size=") and p[5:].isdigit()), None)
    return parts[1], size


def run_embeddings(run: Run, cache_dir=None, compute: bool = True, progress=None):
    """The embeddings of ``run``'s manifest: from the cache, or recomputed with the same extractor; else
    (None, reason)."""
    m = run.manifest
    dirs = default_cache_dirs(run, cache_dir)
    found = find_cached_embeddings(m, dirs)
    if found is not None:
        return found, None
    key = manifest_extractor_key(m)
    if key is None:
        return None, "the manifest names no feature extractor"
    if not compute:
        return None, f"no cached embeddings in {', '.join(map(str, dirs))} (recomputing was switched off)"
    if run.images is None:
        return None, "embeddings are not cached and the dataset is not available to recompute them"
    name, size = _parse_key(key)
    if name is None:
        return None, f"embeddings are not cached and the extractor key {key[:80]!r} cannot be parsed"
    from .embed import build_extractor, embed

    try:
        ex = build_extractor(name, image_size=size)
    except (ValueError, FileNotFoundError, ImportError) as e:
        return None, f"embeddings are not cached and the extractor {name!r} cannot be rebuilt here ({e})"
    if ex.key != key:
        return None, (f"embeddings are not cached and the run's extractor ({key[:120]}…) used other weights or "
                      "preprocessing than can be rebuilt here; pass --cache-dir with the run's embedding cache")
    fingerprint = m["dataset"]["fingerprint"] + run.images.cache_suffix
    emb = embed(run.images.embed_inputs(), ex, cache_dir=dirs[0], fingerprint=fingerprint, progress=progress)
    return emb, None


def pca_2d(x: np.ndarray, max_fit: int = 10000, seed: int = 0) -> np.ndarray:
    """Every row of ``x`` projected on the first two principal components; signs fixed for repeatability.

    The components are fitted on at most ``max_fit`` rows (a seeded sample), on the smaller of the Gram and
    covariance matrices, or by randomized SVD when both are large."""
    x = np.asarray(x, dtype=np.float64)
    fit = x if len(x) <= max_fit else x[np.sort(np.random.default_rng(seed).permutation(len(x))[:max_fit])]
    mean = fit.mean(axis=0)
    xs = fit - mean
    n, d = xs.shape
    if n <= d:
        w, u = np.linalg.eigh(xs @ xs.T)
        top = np.argsort(w)[::-1][:2]
        comps = (u[:, top].T @ xs) / np.sqrt(np.clip(w[top], 1e-12, None))[:, None]
    elif d <= 3000:
        w, v = np.linalg.eigh(xs.T @ xs)
        comps = v[:, np.argsort(w)[::-1][:2]].T
    else:
        from sklearn.utils.extmath import randomized_svd

        comps = randomized_svd(xs, n_components=2, random_state=seed)[2]
    proj = (x - mean) @ comps.T
    if proj.shape[1] < 2:
        proj = np.hstack([proj, np.zeros((len(x), 2 - proj.shape[1]))])
    return proj * np.where(proj[np.abs(proj).argmax(axis=0), [0, 1]] < 0, -1.0, 1.0)


# =============================================================================================== figures
def _figure(w, h):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def fig_metric_vs_time(runs: Sequence[Run], base: Optional[Run]):
    """Figure 7: quality against training-loop wall time, one line per run."""
    fig = _figure(8, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    for i, r in enumerate(runs):
        traj = r.trajectory()
        if not traj:
            continue
        t, a = zip(*traj)
        ax.plot(t, a, marker="o", ms=3, lw=_width(i, len(runs)), color=COLORS[i % len(COLORS)],
                label=f"{r.name} ({r.method})" + (" — baseline" if r is base else ""))
    if base is not None and base.trajectory():
        target = base.trajectory()[-1][1] - DROP_PP
        ax.axhline(target, color="grey", ls="--", lw=1)
        ax.annotate(f"baseline final − {DROP_PP:g}", (0, target), xycoords=("axes fraction", "data"),
                    xytext=(4, 3), textcoords="offset points", fontsize=8, color="grey")
    ax.set_xlabel("training-loop wall time (s, cumulative; offline preprocessing not included)")
    metric = runs[0].metric
    ax.set_ylabel(METRIC_LABEL.get(metric, metric))
    ax.set_title("Quality against training time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def fig_selection_rate(runs: Sequence[Run]):
    """Per epoch: the share of the full training set back-propagated, and the online keep fraction."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(8, 5.6)
    ax1, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    for i, r in enumerate(runs):
        ep = [e["epoch"] for e in r.epochs]
        style = dict(marker="o", ms=3, color=COLORS[i % len(COLORS)], label=f"{r.name} ({r.method})",
                     lw=_width(i, len(runs)), zorder=2 + i)  # earlier runs wider and below: overlaps stay visible
        share = backprop_share_per_epoch(r)
        if any(v is not None for v in share):
            ax1.plot(ep, [np.nan if v is None else v for v in share], **style)
        keep = keep_fraction_per_epoch(r)
        if any(v is not None for v in keep):
            ax2.plot(ep, [np.nan if v is None else v for v in keep], **style)
    ax1.set_ylabel("back-propagated /\nfull training set")
    ax1.set_title("Selection rate per epoch")
    ax2.set_ylabel("kept / forward\n(online selection)")
    ax2.set_xlabel("epoch")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def fig_backprop_histogram(runs: Sequence[Run]):
    """How often each sample was back-propagated, one step histogram per run that recorded counts."""
    with_counts = [(i, r) for i, r in enumerate(runs) if r.counts is not None]
    fig = _figure(8, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    top = max(int(r.counts.max()) for _, r in with_counts)
    edges = np.arange(top + 2) - 0.5 if top < 60 else np.linspace(-0.5, top + 0.5, 61)
    for i, r in with_counts:
        ax.hist(r.counts, bins=edges, histtype="step", lw=1.8, color=COLORS[i % len(COLORS)],
                label=f"{r.name} ({r.method}): mean {r.counts.mean():.2f}, never {int((r.counts == 0).sum())}")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("times a sample was back-propagated over the run")
    ax.set_ylabel("samples")
    ax.set_title("Per-sample back-propagation counts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _width(i: int, n: int) -> float:
    """Line width of run ``i`` of ``n``: earlier runs wider (and drawn below), so overlapping lines stay visible."""
    return 1.4 + 2.0 * (n - 1 - i) / max(n - 1, 1)


def _hex_rgb(color: str):
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def _fit(img, size: int):
    """``img`` scaled to fit a ``size`` square (small images enlarged with nearest-neighbour, no blur)."""
    from PIL import Image

    w, h = img.size
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(new, Image.NEAREST if scale >= 1 else Image.BILINEAR)


def fig_mosaic(images: Images, cells: Sequence, cols: int, title: str, row_labels: Sequence[str] = (),
               cell: int = 76, border: int = 3, label_h: int = 14, fontsize: float = 7):
    """One image: ``cells`` laid out on a grid of ``cols`` columns, each ``(index or None, label, frame colour
    or None)``; ``row_labels`` are written sideways left of each row (one axes in all: fast to draw)."""
    rows = max(1, math.ceil(len(cells) / cols))
    step_x, step_y = cell + 6, cell + label_h + 4
    left = 18 if row_labels else 0
    canvas = np.full((rows * step_y, left + cols * step_x, 3), 255, dtype=np.uint8)
    texts = []
    for k, (idx, label, frame) in enumerate(cells):
        r, c = divmod(k, cols)
        x0, y0 = left + c * step_x + 3, r * step_y + label_h + 2
        if label:
            texts.append((x0 + cell / 2, y0 - 2, label))
        if idx is None:
            continue
        inner = cell - 2 * border
        thumb = np.asarray(_fit(images.image(int(idx)), inner))
        th, tw = thumb.shape[:2]
        ys, xs = y0 + border + (inner - th) // 2, x0 + border + (inner - tw) // 2
        if frame is not None:  # a frame hugging the picture, whatever its aspect ratio
            canvas[ys - border:ys + th + border, xs - border:xs + tw + border] = _hex_rgb(frame)
        canvas[ys:ys + th, xs:xs + tw] = thumb[..., :3]
    h_title = 26
    fig = _figure(canvas.shape[1] / 100, (canvas.shape[0] + h_title) / 100)
    ax = fig.add_axes((0, 0, 1, canvas.shape[0] / (canvas.shape[0] + h_title)))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xlim(0, canvas.shape[1])
    ax.set_ylim(canvas.shape[0], 0)
    ax.axis("off")
    for x, y, text in texts:
        ax.text(x, y, text, ha="center", va="bottom", fontsize=fontsize, clip_on=False)
    for r, text in enumerate(row_labels):
        ax.text(3, r * step_y + label_h + 2 + cell / 2, text, rotation=90, ha="left", va="center", fontsize=8)
    fig.text(0.5, 1 - 4 / (canvas.shape[0] + h_title), title, ha="center", va="top", fontsize=9)
    return fig


def fig_selected_grid(run: Run, most, least, title: str, cols: int = 8, labels=("most", "least")):
    """Figure 8c/d: the most and the least often back-propagated images, each labelled with its class and
    count (``least`` may be empty: one block)."""
    imgs = run.images
    cells, row_labels = [], []
    for ids_, label in zip((most, least), labels):
        if not len(ids_):
            continue
        block = [(i, f"{imgs.class_names[imgs.labels[i]][:11]} ×{run.counts[i]}", None) for i in ids_]
        block += [(None, None, None)] * (-len(block) % cols)
        cells += block
        row_labels += [label] * (len(block) // cols)
    return fig_mosaic(imgs, cells, cols, title, row_labels)


def fig_ids_prototypes(run: Run, emb: np.ndarray, k: int = 6, max_classes: int = 10):
    """Figure 6: per class, the prototype (nearest the centroid), its nearest and its farthest images;
    green frame = kept by the manifest's first subset, red = dropped."""
    from . import ids as ids_mod

    imgs, m = run.images, run.manifest
    params = m.get("params") or {}
    prototypes, seed = int(params.get("prototypes") or 1), int(params.get("seed") or 0)
    kept = kept_mask(m, imgs.keys)
    groups = ids_mod.groups(imgs.labels, len(imgs))[:max_classes]
    cells = []
    for row, (label, members) in enumerate(groups):
        dist, nearest = ids_mod.centroid_distances(emb[members].astype(np.float64), prototypes, seed)
        order = np.argsort(dist, kind="stable")
        proto = members[nearest[0]] if len(nearest) else members[order[0]]
        rest = [members[p] for p in order if members[p] != proto]
        near, far = rest[:k], rest[::-1][:k]
        far = far[:max(0, len(rest) - len(near))]  # a small class: no image twice
        frame = lambda i: KEPT_COLOR if kept[i] else DROPPED_COLOR  # noqa: E731
        name = imgs.class_names[label][:12] if len(imgs.class_names) > 1 else "prototype"
        cells.append((proto, name, frame(proto)))
        cells.append((None, None, None))
        cells += [(i, ("nearest →" if j == 0 and row == 0 else None), frame(i)) for j, i in enumerate(near)]
        cells += [(None, None, None)] * (k - len(near) + 1)
        cells += [(i, ("farthest →" if j == 0 and row == 0 else None), frame(i)) for j, i in enumerate(far)]
        cells += [(None, None, None)] * (k - len(far))
    mode = m["subsets"][0].get("mode") or m.get("method")
    return fig_mosaic(imgs, cells, 2 * k + 3, f"{run.name}: per class the prototype (left), the images nearest to "
                      f"and farthest from the centroid; frame green = kept, red = dropped by the {mode} subset")


def fig_ids_pca(run: Run, emb: np.ndarray, max_points: int = 4000, seed: int = 0):
    """Figure 6: the embeddings projected on their first two principal components, kept versus dropped
    (one panel per subset: with γ, the easy and the hard subsets), and coloured by class."""
    imgs, m = run.images, run.manifest
    xy = pca_2d(emb)
    n = len(xy)
    show = np.sort(np.random.default_rng(seed).permutation(n)[:max_points]) if n > max_points else np.arange(n)
    by_class = len(imgs.class_names) > 1
    panels = len(m["subsets"]) + by_class
    fig = _figure(5 * panels, 4.8)
    for p, sub in enumerate(m["subsets"]):
        ax = fig.add_subplot(1, panels, p + 1)
        keep = kept_mask(m, imgs.keys, p)[show]
        pts = xy[show]
        ax.scatter(pts[~keep, 0], pts[~keep, 1], s=6, c=DROPPED_COLOR, alpha=0.6, lw=0,
                   label=f"dropped ({int((~kept_mask(m, imgs.keys, p)).sum())})")
        ax.scatter(pts[keep, 0], pts[keep, 1], s=6, c=KEPT_COLOR, alpha=0.6, lw=0,
                   label=f"kept ({sub['num_kept']})")
        what = sub.get("mode") or m.get("method")
        ax.set_title(f"{what} subset" + (f" from epoch {sub['from_epoch']}" if len(m["subsets"]) > 1 else ""),
                     fontsize=10)
        ax.legend(fontsize=8, markerscale=2.5, loc="best")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    if by_class:
        from matplotlib import colormaps

        ax = fig.add_subplot(1, panels, panels)
        cmap = colormaps["tab10" if len(imgs.class_names) <= 10 else "tab20"]
        for c, name in enumerate(imgs.class_names):
            sel = show[imgs.labels[show] == c]
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=cmap(c % cmap.N), alpha=0.6, lw=0, label=name[:14])
        ax.set_title("by class", fontsize=10)
        ax.set_xlabel("PC 1")
        if len(imgs.class_names) <= 20:
            ax.legend(fontsize=7, markerscale=2.5, loc="best", ncol=2)
    fig.suptitle(f"{run.name}: 2-D PCA of the {emb.shape[1]}-d embeddings"
                 + (f" ({len(show)} of {n} samples shown)" if len(show) < n else ""), fontsize=10)
    fig.tight_layout()
    return fig


# ================================================================================================ report
@dataclass
class Picture:
    """One figure of the report: its PNG file, title and caption."""

    file: str
    title: str
    caption: str


@dataclass
class Report:
    out: Path
    runs: List[Run]
    baseline: Optional[Run]
    table: List[dict]
    figures: List[Picture]
    notes: List[str]
    files: List[Path]
    class_name: Optional[str] = None

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def _slug(text: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)
    return keep.strip("-.") or "run"


def _unique_names(paths: Sequence[Path]) -> List[str]:
    names = [p.name or str(p) for p in paths]
    out = []
    for i, (p, n) in enumerate(zip(paths, names)):
        if names.count(n) > 1:
            n = f"{p.parent.name}/{n}"
        if n in out:
            n = f"{n}#{i + 1}"
        out.append(n)
    return out


def load_runs(run_dirs: Sequence, data_path=None) -> List[Run]:
    """Every run folder, read and checked (the first bad one raises :class:`RunDirError`)."""
    if not run_dirs:
        raise ValueError("give at least one run folder")
    paths = [Path(p).expanduser() for p in run_dirs]
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise ValueError("the same run folder is given twice")
    return [load_run(p, data_path, name) for p, name in zip(paths, _unique_names(paths))]


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
                raise ValueError(f"--class {class_name!r} is not a class of {r.name}'s dataset: its classes are "
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


def build(run_dirs: Sequence, out, class_name: Optional[str] = None, data_path=None, cache_dir=None,
          baseline: Optional[str] = None, grid: int = 16, embed_missing: bool = True,
          progress: Optional[Callable[[str], None]] = None,
          embed_progress: Optional[Callable[[int, int], None]] = None) -> Report:
    """Read the runs, write every figure and ``index.html`` into ``out``; returns what was written.

    ``progress(step)`` is called before each figure; ``embed_progress(done, total)`` while recomputing
    embeddings that are not cached (``embed_missing=False`` skips those figures instead).
    """
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be a positive integer (images per grid), got {grid!r}")
    from .extras import require

    require("matplotlib", "report", "datareduce report (its figures)")  # before any work
    runs = load_runs(run_dirs, data_path)
    base = choose_baseline(runs, baseline)
    metrics_in = {r.metric for r in runs}
    if len(metrics_in) > 1:
        raise ValueError(f"the runs measure different things ({', '.join(sorted(metrics_in))}): report "
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
        files.append(write_bytes(out / name, _png(fig)))
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
        if chosen is not None and chosen in r.images.class_names:
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
                    class_name=chosen)
    files.append(write_text(out / "index.html", render_html(report)))
    return report


# ================================================================================================== HTML
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
                     f"run final ({e(mlabel)}); train boost = baseline training-loop time / run's, same epochs; "
                     f"boost to {DROP_PP:g} p.p. drop = baseline time to its final value / run's time to reach "
                     f"baseline final − {DROP_PP:g} (– when never reached). Offline preprocessing (IDS embedding "
                     "and selection) is reported apart, as the paper does. ⚠: the run's full-data epochs took "
                     "another time than the same epochs of the baseline, so its boosts are unreliable (see the "
                     "notes).</p>")
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

    parts.append("<h2>Figures</h2>")
    for f in report.figures:
        parts.append(f"<figure id='{e(f.file)}'><figcaption><b>{e(f.title)}</b></figcaption>"
                     f"<img src='{e(f.file)}' alt='{e(f.title)}'><figcaption>{e(f.caption)}</figcaption></figure>")
    if report.notes:
        parts.append("<h2>Notes</h2><ul class=notes>" + "".join(f"<li>{e(n)}</li>" for n in report.notes) + "</ul>")
    parts.append("<p class=muted>Written by <code>datareduce report</code>; opens offline (no scripts, no "
                 "external resources).</p></body></html>\n")
    return "".join(parts)
