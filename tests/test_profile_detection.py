"""bench/profile_detection.py at tiny size: the parts of each profiled epoch add up to no more than its wall time."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_detection_bench import TINY_FLAGS

REPO = Path(__file__).resolve().parents[1]
TOLERANCE_S = 0.05  # timer overhead between the parts and the epoch clock


def _cli(*argv, timeout=120):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0")
    return subprocess.run([sys.executable, str(REPO / "bench" / "profile_detection.py"), *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_profile_parts_add_up_and_data_loading_is_timed(tmp_path, cifar10_root, coco128_root):
    """full (1 epoch) and adonis-prune (2 epochs: its warm-up epoch 0, then a selecting one) through the real
    trainer on 6 images: every part is non-negative, they sum to the epoch's wall time, the data-loading wrapper
    measured something, and profile.json / profile.md are written with the command and the conditions."""
    out = tmp_path / "out"
    common = [*TINY_FLAGS, "--cache-dir", str(tmp_path / "cache"), "--batch", "4", "--workers", "0",
              "--out", str(out), "--runs-dir", str(tmp_path / "runs")]
    done = _cli("--methods", "full,adonis-prune", "--epochs", "2", *common)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[1/2] full epoch 0: " in done.stdout and "[2/2] adonis-prune epoch 1 (selecting): " in done.stdout
    result = json.loads((out / "profile.json").read_text())
    assert result["command"].endswith("--methods full,adonis-prune --epochs 2 " + " ".join(common))
    assert result["conditions_start"]["threads"] >= 1 and "load" in result["conditions_start"]
    assert list(result["methods"]) == ["full", "adonis-prune"]
    for method, r in result["methods"].items():
        assert [e["epoch"] for e in r["epochs"]] == [0, 1]
        assert [e["selecting"] for e in r["epochs"]] == ([False, True] if method == "adonis-prune" else [False] * 2)
        for e in r["epochs"]:
            parts = e["parts"]
            assert set(parts) == {*result["parts"]}
            assert all(v >= -1e-9 for v in parts.values()), (method, parts)
            assert sum(parts.values()) - parts["rest"] <= e["wall_s"] + TOLERANCE_S
            assert parts["data"] > 0 and parts["forward_loss"] > 0 and parts["backward_step"] > 0
            assert parts["validation"] > 0
            assert e["trainer_record"]["epoch"] == e["epoch"]
    # ADONIS's training criterion is the per-image loss (prune mode reuses the training losses)
    assert all(e["parts"]["per_image_loss"] > 0 for e in result["methods"]["adonis-prune"]["epochs"])
    assert all(e["parts"]["per_image_loss"] == 0 for e in result["methods"]["full"]["epochs"])
    md = (out / "profile.md").read_text()
    assert "| data loading + augmentation (train DataLoader __next__) | " in md and "adonis-prune (selecting" in md


@pytest.mark.parametrize("argv, message", [
    (["--methods", "full,nope"], "--methods 'full,nope': unknown nope; choose from full, ids, ids-gamma, rpd, "),
    (["--epochs", "0"], "--epochs 0: must be at least 1"),
    (["--epochs", "5", "--schedule-epochs", "3"], "--schedule-epochs 3: must be at least --epochs (5)"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, argv, message):
    from bench import profile_detection

    assert profile_detection.main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"profile_detection.py: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_seconds_are_called_comparable_only_when_no_other_trainer_ran():
    from bench import profile_detection

    def result(*others):
        return {"conditions_start": {"other_trainers": others[0]},
                "methods": {f"m{i}": {"conditions_start": {"other_trainers": n}} for i, n in enumerate(others[1:])}}

    assert profile_detection.quietness(result(0, 0, 0)).startswith("quiet")
    assert profile_detection.quietness(result(0, 0, 1)).startswith("contended")  # one method started beside one
    assert profile_detection.quietness(result(None, None)).startswith("contended")  # /proc could not tell
