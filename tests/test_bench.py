"""Smoke test of the benchmark: two methods, tiny data, one epoch — the real runner, trainer and summariser."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_smoke(tmp_path, cifar10_root):
    out = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "bench" / "run.py"), "--methods", "full,adonis-eta3", "--seeds", "0",
           "--train-per-class", "20", "--test-per-class", "10", "--epochs", "1", "--out", str(out),
           "--extra", "--workers 0 --batch-size 32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {r["method"]: r for r in json.loads((out / "summary.json").read_text())}
    assert set(rows) == {"full", "adonis-eta3"}
    assert rows["full"]["acc_drop_pp"] == 0 and rows["full"]["train_boost"] == 1
    assert 0 < rows["adonis-eta3"]["backprop_fraction"] < 1  # ADONIS back-propagated fewer samples than full
    assert rows["adonis-eta3"]["scored_fraction"] == 1.0  # one epoch: every sample scored once
    assert (out / "table.md").read_text().count("\n") == 4 and (out / "accuracy_vs_time.png").stat().st_size > 0
    assert (out / "ceiling.json").exists()
    # a second invocation redoes nothing
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0 and again.stdout.count("already finished") == 2


def test_fused_step_times_both_ways(tmp_path):
    """bench/fused_step.py runs both step kinds on a real model and writes its JSON atomically."""
    sys.path.insert(0, str(REPO / "bench"))
    import fused_step

    out = tmp_path / "fused.json"
    fused_step.main(["--batch", "8", "--repeats", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["kept"] == 3 and result["batch"] == 8
    for key in ("separate_s", "fused_s", "full_step_s"):
        assert result[key] > 0
    assert result["fused_over_separate"] == result["fused_s"] / result["separate_s"]
