"""The detection protocol's builder (bench/detection_data.py) and runner (bench/detection.py), at tiny size."""
import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench import detection_data
from bench.detection_data import BuildParams

REPO = Path(__file__).resolve().parents[1]
TINY = BuildParams(train_images=6, val_images=3, canvas=64, min_objects=1, max_objects=1, min_side=16, max_side=32)
TINY_FLAGS = ["--train-images", "6", "--val-images", "3", "--canvas", "64", "--min-objects", "1",
              "--max-objects", "1", "--min-side", "16", "--max-side", "32"]


def build(cache, cifar10_root, coco128_root, params=TINY):
    return detection_data.build(params, cache, cifar10_root, coco128_root)


def files(root: Path) -> dict:
    """Every file of a build but data.yaml (which names the build's own folder): relative path → bytes."""
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*"))
            if f.is_file() and f.name != "data.yaml"}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path, cifar10_root, coco128_root):
    a = build(tmp_path / "a", cifar10_root, coco128_root)
    b = build(tmp_path / "b", cifar10_root, coco128_root)
    c = build(tmp_path / "c", cifar10_root, coco128_root, replace(TINY, seed=1))
    assert a.name == b.name != c.name
    fa, fb, fc = files(a), files(b), files(c)
    assert len([k for k in fa if k.startswith("images/")]) == 9 and fa == fb
    assert all(fa[k] != fc[k] for k in fa if k.startswith("images/"))
    mtime = (a / "build.json").stat().st_mtime_ns
    assert build(tmp_path / "a", cifar10_root, coco128_root) == a  # reused, not rebuilt
    assert (a / "build.json").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [a.name]  # no partial folder left


def test_labels_are_the_pasted_objects(tmp_path, cifar10_root, coco128_root):
    """Each label is a box inside the image, of the class of the CIFAR image pasted there (train objects from
    CIFAR train, val objects from CIFAR test), and the pixels in the box are that image."""
    root = build(tmp_path, cifar10_root, coco128_root)
    record = json.loads((root / "build.json").read_text())
    sources = json.loads((root / "sources.json").read_text())
    names = record["names"]
    assert names == sorted(p.name for p in (cifar10_root / "train").iterdir())
    assert json.loads((root / "data.yaml").read_text()) == {"path": str(root), "train": "images/train",
                                                            "val": "images/val", "names": names}
    s = TINY.canvas
    for split, cifar_split in (("train", "train"), ("val", "test")):
        for n, pasted in enumerate(sources[split]):
            image = cv2.imread(str(root / "images" / split / f"{n:06d}.jpg"))
            assert image.shape == (s, s, 3)
            rows = (root / "labels" / split / f"{n:06d}.txt").read_text().splitlines()
            assert len(rows) == len(pasted) == 1
            cls, cx, cy, w, h = (float(v) for v in rows[0].split())
            assert 0 <= cx - w / 2 and cx + w / 2 <= 1 and 0 <= cy - h / 2 and cy + h / 2 <= 1
            x0, y0, bw, bh = round((cx - w / 2) * s), round((cy - h / 2) * s), round(w * s), round(h * s)
            assert TINY.min_side * 0.75 <= max(bw, bh) and min(bw, bh) <= TINY.max_side * 1.25
            split_dir, cls_name, _ = pasted[0].split("/")
            assert (split_dir, cls_name) == (cifar_split, names[int(cls)])
            crop = image[y0:y0 + bh, x0:x0 + bw].astype(float)
            mine = np.abs(crop - detection_data.paste(cifar10_root / pasted[0], bw, bh)).mean()
            other = cifar10_root / sources["val" if split == "train" else "train"][0][0]
            assert mine < 8 < np.abs(crop - detection_data.paste(other, bw, bh)).mean()  # JPEG noise only
    counts = record["boxes_per_class"]
    assert sum(counts["train"]) == 6 and sum(counts["val"]) == 3


def _cli(script, *argv, timeout=120):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0")
    return subprocess.run([sys.executable, str(REPO / "bench" / script), *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("argv, message", [
    (["--canvas", "100"], "--canvas 100: must be a multiple of 32 (YOLO's stride), at least 32"),
    (["--max-side", "60"], "--max-side 60: must be between --min-side (24) and half the canvas (48)"),
    (["--max-objects", "2"], "--max-objects 2: must be at least --min-objects (3)"),
    (["--data-seed", "-1"], "--data-seed -1: must be 0 or more"),
])
def test_bad_build_flags_one_line_exit_2_nothing_written(tmp_path, capsys, argv, message):
    assert detection_data.main(["--cache-dir", str(tmp_path / "cache"), *argv]) == 2
    err = capsys.readouterr()
    assert err.err == f"detection_data.py: error: {message}\n" and not err.out
    assert not (tmp_path / "cache").exists()


def test_unwritable_cache_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert detection_data.main(["--cache-dir", str(tmp_path / "file" / "cache")]) == 2
    assert capsys.readouterr().err == (f"detection_data.py: error: --cache-dir {tmp_path / 'file' / 'cache'} cannot "
                                       f"be written: {tmp_path / 'file'} is a file, not a folder\n")


def test_runner_trains_one_epoch_end_to_end_and_skips_it_after(tmp_path, cifar10_root, coco128_root):
    """bench/detection.py --protocol synthetic at tiny size: builds the set, trains full for one epoch through
    trainers/yolo_train.py outside the results folder, keeps only the run's small files, summarises; a second
    invocation trains nothing."""
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["--protocol", "synthetic", *TINY_FLAGS, "--cache-dir", str(tmp_path / "cache"), "--epochs", "1",
            "--methods", "full", "--batch", "4", "--workers", "0", "--out", str(out), "--runs-dir", str(runs)]
    done = _cli("detection.py", *argv)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    kept = out / "runs" / "full" / "seed0"
    assert sorted(p.name for p in kept.iterdir()) == ["args.yaml", "command.txt", "conditions.json", "log.jsonl",
                                                      "output.txt", "results.csv", "selection_counts.npy"]
    assert (runs / "full" / "seed0" / "weights" / "last.pt").is_file()  # the weights stay outside
    log = [json.loads(line) for line in (kept / "log.jsonl").read_text().splitlines()]
    assert [r["type"] for r in log] == ["run", "epoch", "summary"] and log[1]["train_samples"] == 6
    command = (kept / "command.txt").read_text()
    assert "imgsz=64" in command and command.startswith(f"{sys.executable} trainers/yolo_train.py ")  # no checkout
    [row] = json.loads((out / "summary.json").read_text())
    assert row["method"] == "full" and row["regime"] == "synthetic" and row["cost_fraction"] == 1
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["dataset"]["params"] == asdict(TINY) and protocol["imgsz"] == 64
    again = _cli("detection.py", *argv)
    assert again.returncode == 0 and "[1/1] full: already finished, skipped" in again.stdout


@pytest.mark.parametrize("argv, message", [
    (["--protocol", "synthetic", "--methods", "full,nope"],
     "--methods 'full,nope': unknown nope; choose from full, full-c0.33, full-c0.5, full-c0.8, "),
    (["--protocol", "synthetic", "--epochs", "0"], "--epochs 0: must be at least 1"),
    (["--canvas", "64"], "--canvas: a setting of the synthetic set; it needs --protocol synthetic (given: coco128)"),
])
def test_runner_bad_input_one_line_exit_2(tmp_path, capsys, argv, message):
    from bench import detection

    assert detection.main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"detection.py: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------- the scoring cost f
def test_detection_scoring_forward_costs_less_than_a_training_step(tmp_path, cifar10_root, coco128_root):
    """bench/ceiling.py times the trainer's own scoring forward and training step of yolov5n on a real batch."""
    from bench.ceiling import measure_detection

    root = build(tmp_path, cifar10_root, coco128_root)
    m = measure_detection(root, batch=4, imgsz=64, repeats=2)
    assert m["batch"] == 4 and m["imgsz"] == 64 and m["device"] == "cpu" and m["amp"] is False
    from ultralytics.utils import NUM_THREADS
    assert m["threads"] == NUM_THREADS  # the threads Ultralytics trains with on the CPU
    assert 0 < m["forward_s"] < m["step_s"] and m["forward_over_step"] == m["forward_s"] / m["step_s"]


def test_ceiling_is_measured_once_and_reused_when_busy(tmp_path, cifar10_root, coco128_root, capsys):
    from bench.ceiling import detection_key, ensure_ceiling, measure_detection

    root = build(tmp_path / "set", cifar10_root, coco128_root)
    key, calls = detection_key(batch=4, imgsz=64), []

    def measured():
        calls.append(1)
        return measure_detection(root, batch=4, imgsz=64, repeats=1)

    quiet = ensure_ceiling(tmp_path / "quiet", key, measured, load=0.2)
    written = json.loads((tmp_path / "quiet" / "ceiling.json").read_text())
    assert written == quiet and {**written, **key} == written and written["load"] == 0.2 and len(calls) == 1
    assert ensure_ceiling(tmp_path / "quiet", key, measured, load=0.2) == written and len(calls) == 1  # kept
    # busy: the quiet measurement of the same model, batch and size is reused, naming its source
    busy = ensure_ceiling(tmp_path / "busy", key, measured, load=3.0, committed=[tmp_path / "quiet" / "ceiling.json"])
    assert len(calls) == 1 and busy["forward_over_step"] == written["forward_over_step"]
    assert busy["source"] == (f"{tmp_path / 'quiet' / 'ceiling.json'} (this machine was busy, load 3.0: not "
                              "measured again)")
    # busy, nothing to reuse (another batch size): with a command to run later, nothing is written
    other = detection_key(batch=8, imgsz=64)
    assert ensure_ceiling(tmp_path / "none", other, measured, later="python bench/ceiling.py --detection", load=3.0,
                          committed=[tmp_path / "quiet" / "ceiling.json"]) is None
    assert not (tmp_path / "none" / "ceiling.json").exists() and len(calls) == 1
    assert "on a quiet machine run python bench/ceiling.py --detection" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--out", "OUT"], "give --detection (this command measures YOLO only; bench/run.py measures the "
                       "classification model of its runs itself)"),
    (["--detection", "--out", "OUT", "--batch", "0"], "--batch 0: must be at least 1"),
    (["--detection", "--out", "OUT", "--data", "NOPE"], "--data NOPE: no data.yaml there (give a YOLO set's folder)"),
])
def test_ceiling_command_bad_input_one_line_exit_2(tmp_path, capsys, argv, message):
    from bench import ceiling

    argv = [a.replace("OUT", str(tmp_path / "out")).replace("NOPE", str(tmp_path / "nope")) for a in argv]
    message = message.replace("NOPE", str(tmp_path / "nope"))
    assert ceiling.main(argv) == 2
    assert capsys.readouterr().err == f"ceiling.py: error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_ceiling_command_writes_ceiling_json(tmp_path, cifar10_root, coco128_root):
    root = build(tmp_path / "set", cifar10_root, coco128_root)
    done = _cli("ceiling.py", "--detection", "--out", str(tmp_path / "out"), "--data", str(root), "--batch", "4",
                "--imgsz", "64", "--repeats", "1", "--force")
    assert done.returncode == 0, done.stderr[-3000:]
    written = json.loads((tmp_path / "out" / "ceiling.json").read_text())
    assert written["task"] == "detect" and written["model"] == "yolov5n.yaml" and written["batch"] == 4
    assert 0 < written["forward_over_step"] < 1 and json.loads(done.stdout[done.stdout.index("{"):]) == written


def test_readme_block_from_a_real_summary(tmp_path, cifar10_root, coco128_root):
    """The runner's summary of real tiny runs (full and RPD, one epoch) has each run's final mAP50 beside its
    mAP50-95 and the summariser's mAP-against-cost plot; the README block is generated from them, naming the
    methods not run yet."""
    from bench import readme_results
    from datareduce import records

    out = tmp_path / "out"
    argv = ["--protocol", "synthetic", *TINY_FLAGS, "--cache-dir", str(tmp_path / "cache"), "--epochs", "1",
            "--methods", "full,rpd", "--batch", "4", "--workers", "0", "--out", str(out), "--runs-dir",
            str(tmp_path / "runs")]
    done = _cli("detection.py", *argv)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads((out / "summary.json").read_text())
    assert [r["method"] for r in rows] == ["full", "rpd"] and (out / "accuracy_vs_cost.png").stat().st_size > 0
    for r in rows:
        log = records.read(out / "runs" / r["method"] / "seed0" / "log.jsonl")
        last = [e for e in log if e["type"] == "epoch"][-1]
        assert r["final_map50"] == pytest.approx(100 * last["map50"]) and r["final"] == pytest.approx(
            100 * last["map50_95"])
    block = readme_results.render_detection(rows, out)
    start, end = readme_results.DETECTION
    assert block.startswith(start + "\n") and block.endswith("\n" + end)
    rpd = rows[1]
    assert (f"| `rpd` | 1 | {rpd['final_map50']:.2f} | {rpd['final']:.2f} | "
            f"{rpd['acc_drop_pp']:.2f} — | {rpd['cost_fraction']:.3f} | ") in block
    assert "Not run yet: `full-c0.33`, `full-c0.5`, `full-c0.8`, `ids`, `ids-gamma`, `fraction0.8`, `adonis-eta3`, " \
           "`adonis-prune`, `infobatch`." in block
    assert "- IDS α 0.8 (target: ≤ 1.0 p.p. mAP50-95 drop at ≥ 1.2× wall-time boost): not run yet." in block
    assert "![mAP50-95 against counted cost](bench/out/accuracy_vs_cost.png)" in block
    measured = (out / "ceiling.json").exists()  # only on a quiet machine (else the runner says how to measure it)
    assert ("f = " in block) == measured and ("not counted yet" in block) != measured
