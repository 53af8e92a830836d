"""Detection benchmark: YOLOv5n from scratch through trainers/yolo_train.py, every method one after another.

    python bench/detection.py --protocol synthetic         # the detection protocol: bench/results-detection
    python bench/detection.py --protocol synthetic --methods full,full-c0.5
    python bench/detection.py --epochs 10 --imgsz 160      # COCO128 (the default), the real-COCO smoke check

Two protocols (bench/README.md, "Detection protocol"): ``synthetic``, CIFAR-10 photographs pasted onto crops of
COCO128 photographs (bench/detection_data.py, built once into the cache; its size flags change the set), on which
full training learns in minutes on a CPU; and ``coco128``, real COCO images, too few for a model from scratch
(every method ends at mAP 0 on a CPU) but the real thing's pipeline. Methods: bench/methods.py's
``detection_methods`` (``full-c<c>`` is full training for c × the epochs, the schedule compressed).

Ultralytics trains each run in ``--runs-dir`` (outside the project: it saves weights there); when a run ends its
log.jsonl, results.csv, args.yaml, manifest and selection_counts.npy go to <out>/runs/<method>/seed<k>/, with
command.txt (the trainer named relative to the repository, where it runs) and conditions.json. A run finished
there is skipped; an interrupted one resumes from its last.pt (or starts again if it has none). Before the runs,
<out>/ceiling.json: the cost of ADONIS's scoring forward over a training step (f of the counted cost,
bench/ceiling.py), measured once on a quiet machine, or reused from a committed quiet measurement of the same
model, batch and size when the machine is busy (with none, not written: ``python bench/ceiling.py --detection``
measures it later). Then <out>/summary.json, table.md and the plots (mAP50-95, bench/summarize.py) as for
classification.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench import data, detection_data  # noqa: E402
from ceiling import detection_key, ensure_ceiling, measure_detection  # noqa: E402
from datareduce._validate import UsageError  # noqa: E402
from datareduce.atomic import write_bytes, write_text  # noqa: E402
from datareduce.paths import cache_root  # noqa: E402
from methods import detection_methods, frontier_epochs  # noqa: E402
from run import finished, run_one  # noqa: E402

PROTOCOLS = {
    "synthetic": {"epochs": 30, "batch": 16, "workers": 1, "out": HERE / "results-detection",
                  "train_args": ["mosaic=0", "optimizer=AdamW", "lr0=0.004", "nbs=16", "warmup_epochs=1"],
                  "methods": list(detection_methods(1))},
    "coco128": {"epochs": 10, "imgsz": 160, "batch": 16, "workers": 0, "out": HERE / "results" / "detection",
                "train_args": [], "methods": ["full", "ids", "rpd", "adonis-eta3"]},
}
KEPT = (".jsonl", ".csv", ".yaml", ".json", ".npy")  # copied from a run folder (never weights/ nor images)
MODEL = "yolov5n.yaml"
TRAINER = "trainers/yolo_train.py"  # relative to the repository, where the runs are started


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=PROTOCOLS, default="coco128",
                   help="synthetic: the detection protocol; coco128: real COCO images (default, as before synthetic)")
    p.add_argument("--methods", default=None, help="comma-separated (default: the protocol's; bench/methods.py)")
    p.add_argument("--epochs", type=int, default=None, help="the full run's epochs (default: the protocol's)")
    p.add_argument("--imgsz", type=int, default=None, help="default: the canvas (synthetic), 160 (coco128)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--workers", type=int, default=None, help="data-loading processes")
    p.add_argument("--seed", type=int, default=0, help="the training seed")
    p.add_argument("--extra", default="", help="more Ultralytics arguments, e.g. 'hsv_h=0 close_mosaic=0'")
    p.add_argument("--out", type=Path, default=None, help="default: bench/results-detection (synthetic), "
                   "bench/results/detection (coco128)")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="where Ultralytics trains (weights and all; default: under $DATAREDUCE_CACHE or "
                        "~/.cache/datareduce, detection-runs/)")
    g = p.add_argument_group("the synthetic set (bench/detection_data.py)")
    detection_data.add_build_arguments(g)
    return p.parse_args(argv)


def check(a, proto) -> list:
    """The methods to run; UsageError for bad input."""
    known = detection_methods(a.epochs)
    methods = [m.strip() for m in (a.methods or ",".join(proto["methods"])).split(",") if m.strip()]
    unknown = [m for m in methods if m not in known]
    if unknown or not methods:
        raise UsageError(f"--methods {a.methods!r}: unknown {', '.join(unknown) or '(none given)'}; choose from "
                         f"{', '.join(known)}")
    for flag, value in (("--epochs", a.epochs), ("--batch", a.batch), ("--imgsz", a.imgsz)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} {value}: must be at least 1")
    if a.workers is not None and a.workers < 0:
        raise UsageError(f"--workers {a.workers}: must be 0 or more")
    if a.protocol != "synthetic":
        given = [flag for name, (flag, _) in detection_data.FLAGS.items() if getattr(a, f"build_{name}") is not None]
        if given or a.cache_dir:
            raise UsageError(f"{(given or ['--cache-dir'])[0]}: a setting of the synthetic set; it needs "
                             f"--protocol synthetic (given: {a.protocol})")
    if a.seed < 0:
        raise UsageError(f"--seed {a.seed}: must be 0 or more")
    return methods


def trainer_command(a, method: str, flags: list, data_dir: Path, work: Path) -> list:
    """The yolo_train.py command of one run: resumed from its last.pt when an interrupted run left one."""
    script = [sys.executable, TRAINER, *flags]
    last = work / "weights" / "last.pt"
    if last.exists():
        return [*script, f"resume={last}"]
    shutil.rmtree(work, ignore_errors=True)  # killed before its first checkpoint: start again
    epochs = frontier_epochs(float(method[len("full-c"):]), a.epochs) if method.startswith("full-c") else a.epochs
    return [*script, f"data={data_dir}", f"model={MODEL}", f"imgsz={a.imgsz}", f"epochs={epochs}",
            f"batch={a.batch}", f"workers={a.workers}", f"seed={a.seed}", "deterministic=True", "plots=False",
            "device=cpu", *a.train_args, f"project={work.parent}", f"name={work.name}", "exist_ok=True"]


def keep_results(work: Path, run_dir: Path) -> None:
    """Copy a finished run's small files from its Ultralytics folder into the results, its log last (the log's
    summary line is what marks the run finished)."""
    files = sorted(f for f in work.iterdir() if f.is_file() and f.suffix in KEPT)
    for f in sorted(files, key=lambda f: f.name == "log.jsonl"):
        write_bytes(run_dir / f.name, f.read_bytes())


def main(argv=None) -> int:
    a = parse_args(argv)
    proto = PROTOCOLS[a.protocol]
    a.epochs = a.epochs if a.epochs is not None else proto["epochs"]
    try:
        methods = check(a, proto)
        if a.protocol == "synthetic":
            params = detection_data.params_from(a)
            data_dir = detection_data.build(params, a.cache_dir)
            imgsz, dataset = params.canvas, {"name": data_dir.name, **json.loads((data_dir / "build.json").read_text())}
        else:
            data_dir, imgsz, dataset = data.unpack("coco128.tar.gz", "coco128"), proto["imgsz"], {"name": "coco128"}
    except (UsageError, FileNotFoundError) as exc:
        print(f"detection.py: error: {exc}", file=sys.stderr)
        return 2
    a.imgsz = a.imgsz or imgsz
    a.batch = a.batch or proto["batch"]
    a.workers = proto["workers"] if a.workers is None else a.workers
    a.train_args = [*proto["train_args"], *shlex.split(a.extra)]
    out = (a.out or proto["out"]).resolve()
    digest = hashlib.sha256(str(out).encode()).hexdigest()[:8]
    runs_dir = (a.runs_dir or cache_root() / "detection-runs" / f"{out.name}-{digest}").expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench_command.txt", "a") as f:  # every invocation that wrote into this folder
        f.write(shlex.join([sys.executable, *sys.argv]) + "\n")
    write_text(out / "protocol.json", json.dumps({
        "protocol": a.protocol, "epochs": a.epochs, "imgsz": a.imgsz, "batch": a.batch, "workers": a.workers,
        "train_args": a.train_args, "model": MODEL, "dataset": dataset}, indent=1) + "\n")
    write_text(out / "machine.json", json.dumps({
        "platform": platform.platform(), "processor": platform.processor(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}, indent=1) + "\n")
    later = shlex.join(["python", "bench/ceiling.py", "--detection", "--out", str(out), "--batch", str(a.batch),
                        "--imgsz", str(a.imgsz), "--data", str(data_dir)])
    ensure_ceiling(out, detection_key(MODEL, a.batch, a.imgsz),
                   lambda: measure_detection(data_dir, MODEL, a.batch, a.imgsz), later=later)

    known = detection_methods(a.epochs)
    for n, method in enumerate(methods, 1):
        run_dir, work = out / "runs" / method / f"seed{a.seed}", runs_dir / method / f"seed{a.seed}"
        label = f"[{n}/{len(methods)}] {method}"
        if finished(run_dir):
            print(f"{label}: already finished, skipped")
            continue
        cmd = trainer_command(a, method, known[method], data_dir, work)
        print(f"{label}: {shlex.join(known[method]) or '(no flags)'}", flush=True)
        run_one(cmd, run_dir, label)
        keep_results(work, run_dir)
    if finished(out / "runs" / "full" / f"seed{a.seed}"):
        import summarize
        summarize.main([str(out), "--metric", "map50_95"])
    else:
        print(f"no finished full run in {out / 'runs'}: no summary (it compares every method with full)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
