"""trainers/yolo_train.py with model= weights: a .pt that is not on disk is refused before any work (Ultralytics
would try to download it and leave a half-made run folder); a local .pt trains; a .yaml builds from scratch."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datareduce import records
from test_yolo_train import TINY, coco_small, of  # noqa: F401  (the 24-image COCO128 cut)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "trainers" / "yolo_train.py"


def _train(cwd, *argv):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0")
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, argv), "--cache-dir", str(cwd / "cache")], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("model, looked_for", [("yolov5nu.pt", "yolov5nu.pt"),
                                               ("yolov5n.pt", "yolov5nu.pt"),  # Ultralytics' own renaming
                                               ("weights/mine.pt", "weights/mine.pt")])
def test_weights_not_on_disk_are_refused_before_any_work(coco_small, tmp_path, model, looked_for):  # noqa: F811
    proc = _train(tmp_path, f"data={coco_small}", f"model={model}", "project=runs", *TINY)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "ConnectionError" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"yolo_train.py: error: model={model}: weights not on disk")
    assert f"looked for {looked_for} and " in line
    assert "pass a local weights file (model=/path/to/" in line and ".yaml)" in line
    assert not (tmp_path / "runs").exists(), "no run folder may be made"


def test_local_weights_train(coco_small, tmp_path):  # noqa: F811
    from datareduce.integrations.ultralytics_env import ensure_offline

    ensure_offline()
    from ultralytics import YOLO

    YOLO("yolov5n.yaml").save(str(tmp_path / "local.pt"))  # a real checkpoint on disk: nothing to download
    proc = _train(tmp_path, f"data={coco_small}", "model=local.pt", "project=runs", "name=w", *TINY)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    epochs = of("epoch", records.read(tmp_path / "runs" / "w" / "log.jsonl"))
    assert len(epochs) == 1 and epochs[0]["optimizer_steps"] >= 1
