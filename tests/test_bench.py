"""Smoke test of the benchmark: two methods, tiny data, one epoch — the real runner, trainer and summariser."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_bench_smoke(tmp_path, cifar10_root):
    """Two seeds of full, the frontier point c=0.5 (1 of 2 epochs), ADONIS η=3 and RS2 at ADONIS's measured
    budget, two runs at a time: the real runner, trainer and summariser, and the summary's statistics."""
    out = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "bench" / "run.py"), "--methods", "full,full-c0.5,adonis-eta3,rs2@adonis-eta3",
           "--seeds", "0", "1", "--train-per-class", "20", "--test-per-class", "10", "--epochs", "2",
           "--parallel", "2", "--out", str(out), "--extra", "--workers 0 --batch-size 32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {r["method"]: r for r in json.loads((out / "summary.json").read_text())}
    assert set(rows) == {"full", "full-c0.5", "adonis-eta3", "rs2@adonis-eta3"}
    for r in rows.values():
        assert r["seeds"] == [0, 1] and r["regime"] == "short"
        for key in ("method", "params", "top1_mean", "top1_sd", "acc_drop_pp", "acc_drop_ci95", "cost_fraction",
                    "train_boost", "vs_frontier_pp", "vs_frontier_ci95"):
            assert key in r, key
        assert not r["boost_quiet"]  # ran two at a time: its wall-time boost is marked contended
    full, half, adonis, rs2 = (rows[m] for m in ("full", "full-c0.5", "adonis-eta3", "rs2@adonis-eta3"))
    assert full["acc_drop_pp"] == 0 and full["cost_fraction"] == 1 and full["vs_frontier_pp"] == 0
    assert half["cost_fraction"] == 0.5 and half["params"]["epochs"] == 1
    f = json.loads((out / "ceiling.json").read_text())["forward_over_step"]
    for p in adonis["per_seed"]:  # every sample scored in both epochs (η=3, seed epoch 0 scored; epoch 1 reuses)
        assert p["cost_fraction"] == pytest.approx(p["scored_fraction"] * f + p["backprop_fraction"])
    # RS2 trains the fraction of the data ADONIS back-propagated, seed by seed
    for a, r in zip(adonis["per_seed"], rs2["per_seed"]):
        assert r["backprop_fraction"] == pytest.approx(a["backprop_fraction"], abs=0.01)
        assert r["scored_fraction"] == 0
    lo, hi = adonis["acc_drop_ci95"]
    assert lo <= adonis["acc_drop_pp"] <= hi
    table = (out / "table.md").read_text()
    assert table.count("\n") == 2 + 4 and "(contended)" in table
    assert (out / "accuracy_vs_cost.png").stat().st_size > 0 and (out / "accuracy_vs_time.png").stat().st_size > 0
    # a second invocation redoes nothing
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0 and again.stdout.count("already finished") == 8


def test_frontier_and_statistics():
    """The summary's pure pieces: the frontier's interpolation, the paired t interval, the verdict."""
    sys.path.insert(0, str(REPO / "bench"))
    import summarize

    points = [(0.25, 50.0), (0.5, 60.0), (1.0, 70.0)]
    assert summarize.frontier_at(points, 0.375) == pytest.approx(55.0)
    assert summarize.frontier_at(points, 0.75) == pytest.approx(65.0)
    assert summarize.frontier_at(points, 1.2) == 70.0  # dearer than full: compared with full
    assert summarize.frontier_at(points, 0.1) is None  # cheaper than the cheapest point: not measured
    mean, ci = summarize.t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and ci == pytest.approx([2.0 - 4.302653 / 3 ** 0.5, 2.0 + 4.302653 / 3 ** 0.5], rel=1e-5)
    assert summarize.t_interval([1.0]) == (1.0, None)
    assert [summarize.verdict(c) for c in ([0.1, 2], [-2, -0.1], [-1, 1], None)] == [
        "above", "below", "within noise", "n/a (one seed)"]
    import readme_results

    rows = [{"method": m, "cost_fraction": c, "top1_mean": a} for m, c, a in
            [("full", 1.0, 75.0), ("cheap", 0.3, 60.0), ("dominated", 0.8, 59.0), ("mid", 0.6, 70.0), ("tie", 0.6, 69.0)]]
    assert [r["method"] for r in readme_results.pareto(rows)] == ["cheap", "mid", "full"]


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


def test_readme_long_protocol_results_come_from_the_summary():
    """The README's long-protocol block is exactly what bench/readme_results.py renders from the committed
    bench/results-long/summary.json."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "readme_results.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="counts processes through /proc")
@pytest.mark.parametrize("script", ["trainers/classify.py", "trainers/yolo_train.py", "bench/authors_infobatch.py"])
def test_a_run_started_beside_another_runners_trainer_is_not_quiet(script):
    """The runner records how many benchmark trainers were already running (e.g. a detection runner beside a
    classification one); the summariser then never takes that run's wall time as quiet."""
    sys.path.insert(0, str(REPO / "bench"))
    import run
    import summarize

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", f"elsewhere/{script}"])
    try:
        deadline = time.monotonic() + 10  # /proc shows the command line once the child has started
        while sleeper.pid not in run.trainer_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sleeper.pid in run.trainer_pids()
        sleeper.send_signal(signal.SIGSTOP)  # paused, as during a quiet measurement: it takes no CPU
        deadline = time.monotonic() + 10
        while sleeper.pid in run.trainer_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sleeper.pid not in run.trainer_pids()
        sleeper.send_signal(signal.SIGCONT)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert summarize.quiet({"conditions": {"parallel": 1, "other_trainers_at_start": 0}})
    assert not summarize.quiet({"conditions": {"parallel": 1, "other_trainers_at_start": 1}})
    assert not summarize.quiet({"conditions": {"parallel": 2}})


def test_a_detection_boost_measured_alone_stands_beside_a_contended_one(tmp_path):
    """readme_results takes a wall-time boost from a profile only where every trainer in it ran alone; the
    boost is the training loop's seconds (the trainer's train_time_s, what the benchmark's boost reads)."""
    sys.path.insert(0, str(REPO / "bench"))
    import readme_results

    result = json.loads((REPO / "bench" / "results-detection" / "profile-quiet" / "profile.json").read_text())
    (tmp_path / "profile-a").mkdir()
    (tmp_path / "profile-a" / "profile.json").write_text(json.dumps(result))
    loop = {m: [e["trainer_record"]["train_time_s"] for e in result["methods"][m]["epochs"]] for m in ("full", "ids")}
    name, epochs, boost = readme_results.quiet_profile(tmp_path, "ids")
    assert (name, epochs) == ("profile-a", len(loop["ids"]))
    assert boost == pytest.approx(sum(loop["full"]) / len(loop["full"]) / (sum(loop["ids"]) / len(loop["ids"])))
    assert readme_results.quiet_profile(tmp_path, "adonis-prune") is None  # not profiled there
    result["methods"]["ids"]["conditions_start"]["other_trainers"] = 1  # another trainer ran beside IDS
    (tmp_path / "profile-a" / "profile.json").write_text(json.dumps(result))
    assert readme_results.quiet_profile(tmp_path, "ids") is None
