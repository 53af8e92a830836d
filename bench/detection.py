"""Detection benchmark at CPU scale: YOLOv5n from scratch on COCO128, full vs IDS vs RPD vs ADONIS.

    python bench/detection.py                      # writes bench/results/detection/{runs,summary.json,table.md}
    python bench/detection.py --epochs 3 --imgsz 128

Runs trainers/yolo_train.py one method after another on the same machine (a finished run is not redone), then
summarises mAP50-95 against the full run with the same code as the classification table.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench import data  # noqa: E402
from datareduce.atomic import write_text  # noqa: E402
from run import finished, run_one  # noqa: E402

METHODS = {"full": [], "ids": ["--ids-alpha", "0.8"], "rpd": ["--reduce", "rpd"], "adonis-eta3": ["--adonis-eta", "3"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--imgsz", type=int, default=160)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results" / "detection")
    a = p.parse_args(argv)
    coco = data.unpack("coco128.tar.gz", "coco128")
    a.out.mkdir(parents=True, exist_ok=True)
    write_text(a.out / "bench_command.txt", shlex.join([sys.executable, *sys.argv]) + "\n")
    methods = [m for m in a.methods.split(",") if m]
    for n, method in enumerate(methods, 1):
        run_dir = a.out / "runs" / method / f"seed{a.seed}"
        label = f"[{n}/{len(methods)}] {method}"
        if finished(run_dir):
            print(f"{label}: already finished, skipped")
            continue
        cmd = [sys.executable, str(REPO / "trainers" / "yolo_train.py"), *METHODS[method], f"data={coco}",
               "model=yolov5n.yaml", f"imgsz={a.imgsz}", f"epochs={a.epochs}", "batch=16", "workers=0",
               f"seed={a.seed}", "deterministic=True", "plots=False", "device=cpu",
               f"project={run_dir.parent}", f"name={run_dir.name}", "exist_ok=True"]
        print(f"{label}: {shlex.join(METHODS[method]) or '(no flags)'}", flush=True)
        run_one(cmd, run_dir, label)
    import summarize
    summarize.main([str(a.out), "--metric", "map50_95"])


if __name__ == "__main__":
    main()
