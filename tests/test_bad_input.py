"""Unreadable images and unwritable output folders, with real files and real processes: named in one line before any
work (exit code 2, no traceback, nothing written), or with --skip-bad-images left out with a warning."""
import io
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from test_classify_helpers import REPO, SMALL, env, log, run
from datareduce import cli, manifest

DATAREDUCE = [sys.executable, "-m", "datareduce.cli"]


def _error_line(proc):
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return lines[-1]


@pytest.fixture(scope="module")
def tree(cifar10_small, tmp_path_factory):
    """An ImageFolder tree of 2 classes × 6 real CIFAR-10 train images, 2 × 2 val, plus five bad files in train:
    empty, not an image, a JPEG cut inside its header, a JPEG cut after its header (no end marker), a cut PNG.
    Returns (root, the bad files)."""
    root = tmp_path_factory.mktemp("bad-images")
    for split, n in (("train", 6), ("test", 2)):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((cifar10_small / split / cls).iterdir())[:n]:
                shutil.copyfile(f, root / split / cls / f.name)
    jpeg = (root / "train" / "cat" / sorted(p.name for p in (root / "train" / "cat").iterdir())[0]).read_bytes()
    png = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(png, format="PNG")
    bad = {"cat/empty.jpg": b"", "cat/notes.png": b"this is not an image\n", "dog/header-cut.jpg": jpeg[:40],
           "dog/body-cut.jpg": jpeg[: int(len(jpeg) * 0.8)], "dog/cut.png": png.getvalue()[:-30]}
    for name, data in bad.items():
        (root / "train" / name).write_bytes(data)
    return root, sorted(str(root / "train" / name) for name in bad)


def test_unreadable_images_are_named_before_training(tree, tmp_path):
    root, bad = tree
    out = tmp_path / "out"
    line = _error_line(run(["--data-path", root, *SMALL, "--epochs", "1", "--output-dir", out], check=False))
    assert line.startswith(f"classify.py: error: 5 unreadable image(s) of {12 + 4 + 5}: {bad[0]} (")
    assert "… 2 more; replace or remove them, or pass --skip-bad-images to leave them out" in line
    assert all(path in line for path in bad[:3])
    assert not out.exists()


def test_skip_bad_images_trains_on_the_readable_ones(tree, tmp_path):
    root, bad = tree
    out = tmp_path / "out"
    proc = run(["--data-path", root, *SMALL, "--epochs", "1", "--output-dir", out, "--skip-bad-images"])
    warning = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1, proc.stderr
    assert warning[0].startswith("classify.py: warning: --skip-bad-images: left out 5 unreadable image(s) of 21: ")
    assert warning[0].endswith("; …") and all(f"{path} (" in warning[0] for path in bad[:3])
    (first,) = log(out, "run")
    assert first["skipped_images"] == bad and first["num_train"] == 12 and first["num_val"] == 4
    (epoch,) = log(out, "epoch")
    assert epoch["samples_backprop"] == 12
    assert np.load(out / "selection_counts.npy").shape == (12,)


def test_the_reasons_are_told_apart(tree):
    from datareduce.datasets import find_bad_images

    root, bad = tree
    reasons = dict(find_bad_images(bad + [str(p) for p in (root / "test" / "cat").iterdir()]))
    assert sorted(reasons) == bad  # the good ones pass
    assert reasons[str(root / "train" / "cat" / "empty.jpg")] == "empty file"
    assert reasons[str(root / "train" / "cat" / "notes.png")] == "not an image file PIL can read"
    assert "truncated" in reasons[str(root / "train" / "dog" / "body-cut.jpg")]  # caught by the end-marker check


def test_an_image_that_fails_only_when_decoded_stops_with_one_line(cifar10_small, tmp_path):
    """A BMP cut short has a whole header, so it passes the start-up check; decoding it in a DataLoader worker
    fails with one line naming it, not the worker's traceback."""
    root = tmp_path / "data"
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((cifar10_small / split / cls).iterdir())[:4]:
                shutil.copyfile(f, root / split / cls / f.name)
    bmp = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 90, 200)).save(bmp, format="BMP")
    cut = root / "train" / "dog" / "cut.bmp"
    cut.write_bytes(bmp.getvalue()[:-500])
    out = tmp_path / "out"
    line = _error_line(run(["--data-path", root, *SMALL, "--workers", "1", "--epochs", "1", "--output-dir", out],
                           check=False))
    assert line.startswith(f"classify.py: error: image {cut} cannot be decoded (")
    assert line.endswith("): replace or remove this file")


def test_datareduce_ids_names_them_or_skips_them(tree, tmp_path, capsys):
    root, bad = tree
    out = tmp_path / "m.json"
    code = cli.main(["ids", "--data-path", str(root), "--method", "rpd", "--alpha", "0.5", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("datareduce: error: 5 unreadable image(s) of 17: ") and not out.exists()
    code = cli.main(["ids", "--data-path", str(root), "--method", "rpd", "--alpha", "0.5", "--out", str(out),
                     "--skip-bad-images"])
    err = capsys.readouterr().err
    assert code == 0 and "datareduce: warning: --skip-bad-images: left out 5 unreadable image(s) of 17" in err
    made = manifest.read(out)
    assert made["dataset"]["num_samples"] == 12 and made["subsets"][0]["num_kept"] == 6
    # the trainer, leaving out the same files, has the same listing: it accepts the manifest
    train_out = tmp_path / "train"
    run(["--data-path", root, *SMALL, "--epochs", "1", "--output-dir", train_out, "--skip-bad-images",
         "--ids-manifest", out])
    assert log(train_out, "epoch")[0]["samples_backprop"] == 6


@pytest.mark.parametrize("where, problem", [
    ("afile/out", "afile is a file, not a folder"),
    ("afile", "afile is a file, not a folder"),
    ("/proc/datareduce-out", "creating a folder in /proc failed"),
])
def test_an_unwritable_output_dir_is_refused_before_any_work(where, problem, tmp_path):
    (tmp_path / "afile").write_text("a plain file\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    line = _error_line(run(["--data-path", tmp_path / "nope-not-read-yet", "--output-dir", where], cwd=tmp_path,
                           check=False))
    assert line.startswith(f"classify.py: error: --output-dir {where} cannot be written: {problem}")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # the write probe leaves nothing behind


def test_an_output_dir_that_can_be_made_is_probed_without_trace(tmp_path):
    from datareduce.atomic import check_writable_dir

    check_writable_dir(tmp_path / "new" / "deeper", "--output-dir x")  # nearest existing folder: tmp_path
    check_writable_dir(tmp_path, "--output-dir x")  # exists: a file is made in it and removed
    assert list(tmp_path.iterdir()) == []


def test_datareduce_ids_refuses_an_unwritable_out_before_embedding(cifar10_small, tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = subprocess.run([*DATAREDUCE, "ids", "--data-path", str(cifar10_small), "--out", "afile/m.json"],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert _error_line(proc) == "datareduce: error: --out afile/m.json cannot be written: afile is a file, not a folder"
    assert "Embedding" not in proc.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_yolo_project_that_cannot_be_written(tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = subprocess.run([sys.executable, str(REPO / "trainers" / "yolo_train.py"), "project=afile/runs",
                           "--cache-dir", str(tmp_path / "cache")], cwd=tmp_path, env=env(), capture_output=True,
                          text=True, timeout=120)
    assert _error_line(proc) == "yolo_train.py: error: project=afile/runs cannot be written: afile is a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nor the embedded data set generated
