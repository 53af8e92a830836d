"""The Ultralytics release check at start-up: the private DetectionTrainer methods our trainer overrides must be
there, with the parameters our overrides take, else one line naming the release, the tested range and the method."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datareduce.extras import MissingExtra
from datareduce.integrations.ultralytics_env import (check_private_overrides, ensure_offline, installed_version,
                                                     override_problems)

ensure_offline()
from datareduce.integrations.ultralytics import PRIVATE_OVERRIDES, DataReduceDetectionTrainer  # noqa: E402
from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class WithoutScheduler(DetectionTrainer):
    """A release whose BaseTrainer no longer has _setup_scheduler (a subclass cannot delete an inherited method:
    None in its place is what getattr then finds)."""

    _setup_scheduler = None


class SetupTakesWorldSize(DetectionTrainer):
    """A release whose _setup_train takes the world size again (as Ultralytics 8.0 did)."""

    def _setup_train(self, world_size):
        return super()._setup_train()


def test_the_installed_release_matches_every_override():
    assert installed_version() == "8.4.190"
    assert override_problems(DataReduceDetectionTrainer, DetectionTrainer, PRIVATE_OVERRIDES) == []
    check_private_overrides(DataReduceDetectionTrainer, DetectionTrainer, PRIVATE_OVERRIDES)  # no error


def test_a_missing_method_is_named_with_the_release_and_the_range():
    with pytest.raises(MissingExtra) as info:
        check_private_overrides(DataReduceDetectionTrainer, WithoutScheduler, PRIVATE_OVERRIDES, version="8.5.0")
    assert str(info.value) == (
        "ultralytics 8.5.0 is installed, but datareduce's YOLO trainer is tested with ultralytics>=8.4.190,<8.5 and "
        "overrides private WithoutScheduler methods that this release lacks or has changed (_setup_scheduler: "
        "missing); pip install 'datareduce[yolo]' installs a tested release")
    assert info.value.extra == "yolo"


def test_a_changed_signature_is_named(monkeypatch):
    monkeypatch.setenv("DATAREDUCE_UNTESTED_ULTRALYTICS", "1")  # does not lift this refusal
    assert override_problems(DataReduceDetectionTrainer, SetupTakesWorldSize, PRIVATE_OVERRIDES) == [
        "_setup_train: now (self, world_size), ours (self)"]
    with pytest.raises(MissingExtra, match=r"^ultralytics 9\.0\.0 is installed, .*\(_setup_train: now \(self, "
                                           r"world_size\), ours \(self\)\); pip install"):
        check_private_overrides(DataReduceDetectionTrainer, SetupTakesWorldSize, PRIVATE_OVERRIDES, version="9.0.0")


# The CLI on an Ultralytics whose BaseTrainer lost a method we override: the real script, the method deleted from
# the real class before the script runs.
WITHOUT_METHOD = """
import runpy, sys
from ultralytics.engine.trainer import BaseTrainer
del BaseTrainer._close_dataloader_mosaic
sys.argv = ["trainers/yolo_train.py"] + sys.argv[1:]
runpy.run_path("trainers/yolo_train.py", run_name="__main__")
"""


def test_the_trainer_refuses_at_construction_in_one_line(tmp_path, coco128_root):
    env = dict(os.environ, DATAREDUCE_CACHE=str(tmp_path / "cache"), YOLO_CONFIG_DIR=str(tmp_path / "config"))
    done = subprocess.run([sys.executable, "-c", WITHOUT_METHOD, f"data={coco128_root / 'data.yaml'}", "epochs=1",
                           "imgsz=64", f"project={tmp_path / 'runs'}", "workers=0"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "yolo_train.py: error: ultralytics 8.4.190 is installed, but datareduce's YOLO trainer is tested with "
        "ultralytics>=8.4.190,<8.5 and overrides private DetectionTrainer methods that this release lacks or has "
        "changed (_close_dataloader_mosaic: missing); pip install 'datareduce[yolo]' installs a tested release")
    assert not (tmp_path / "runs").exists()  # refused before any run folder was made
