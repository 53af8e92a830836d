"""Reading run folders: the log, the per-sample counts and the manifest, checked against each other and the dataset."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .. import manifest as manifest_mod
from .. import run_files
from .._validate import UsageError
from ..config import FAMILY_OF
from ..records import LOG_NAME
from .images import Images, open_detection_images, open_images

MANIFEST_NAMES = (run_files.MANIFEST_NAME, "ids_manifest.json")  # older YOLO trainers wrote the second
CONFIG_TYPES = ("run", "config")  # the record holding the run's settings; older YOLO trainers wrote "config"
METRICS = ("top1", "map50_95", "map50")  # the first one an epoch record has is the run's quality metric
METRIC_LABEL = {"top1": "top-1 accuracy (%)", "map50_95": "mAP50-95 (%)", "map50": "mAP50 (%)"}


class RunDirError(UsageError):
    """A folder that is not a readable datareduce run: missing, corrupt or written by something else."""


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
    whole_images: Optional[Images] = None  # detection cut by Ultralytics' fraction=: the uncut listing
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
        family = FAMILY_OF.get(reduce.get("method"))  # where a baseline's parameters are
        if isinstance(reduce.get(family), dict):
            parts.append(" ".join(f"{k}={v}" for k, v in reduce[family].items()))
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


def detect_method(config: dict, manifest: Optional[dict], epochs: List[dict], summary: Optional[dict]):
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
    path = folder / run_files.COUNTS_NAME
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


def load_run(path, data_path=None, name: Optional[str] = None) -> Run:
    """Read and check one run folder. ``data_path`` overrides the dataset the run recorded.

    Raises :class:`RunDirError` for a folder that is not a datareduce run or whose files are corrupt, or whose
    files disagree with each other or with the dataset (counts length, manifest fingerprint). The run files are
    read from the folder itself or from its ``datareduce/`` subfolder (the output folder of a patched upstream
    script).
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        raise RunDirError(f"run folder {folder} does not exist")
    if not folder.is_dir():
        raise RunDirError(f"{folder} is not a folder: give the output dir of a training run (it holds {LOG_NAME})")
    files = run_files.find(folder)
    log = files / LOG_NAME
    if not log.is_file():
        raise RunDirError(f"{folder} is not a datareduce run folder: it has no {LOG_NAME}, nor has its "
                          f"{run_files.SUBFOLDER}/ (expected the --output-dir of trainers/classify.py or of a patched "
                          "upstream script, or the run folder of trainers/yolo_train.py)")
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
    counts = _find_counts(files)
    manifest, manifest_file = _find_manifest(files)
    method, source = detect_method(config, manifest, epochs, summary)
    run = Run(path=folder, name=name or folder.name, records=records, epochs=epochs, config=config, method=method,
              method_source=source, metric=metric, counts=counts, manifest=manifest, manifest_file=manifest_file)
    if not config:
        run.notes.append(f"{LOG_NAME} has no run record: the method was {source}")
    if manifest is not None and counts is not None and len(counts) != run.manifest["dataset"]["num_samples"]:
        raise RunDirError(f"{folder}: {run_files.COUNTS_NAME} has {len(counts)} entries but its manifest was made "
                          f"from {run.manifest['dataset']['num_samples']} samples: the files come from different runs")
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
    fraction = _ultralytics_args(run).get("fraction", 1.0) if run.detection else 1.0
    try:
        if run.detection:
            images = open_detection_images(data_path, run.manifest, fraction)
            if fraction not in (None, 0, 1) and not isinstance(fraction, bool):  # maybe cut: the whole listing too
                whole = open_detection_images(data_path, None, 1.0)
                run.whole_images = whole if len(whole) != len(images) else None
        else:
            images = open_images(None if data_path is None else str(data_path))
    except (FileNotFoundError, UsageError) as e:
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
        raise UsageError("give at least one run folder")
    paths = [Path(p).expanduser() for p in run_dirs]
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise UsageError("the same run folder is given twice")
    return [load_run(p, data_path, name) for p, name in zip(paths, _unique_names(paths))]
