import json
import signal
import subprocess
import sys

import pytest
from sklearn.datasets import load_digits

from datareduce import ids, manifest


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    names = [f"{t}/{i:04d}.png" for i, t in enumerate(d.target)]
    return d.data, d.target, names


def build(digits, seed=0):
    x, y, names = digits
    kept = ids.select(x, y, alpha=0.5, seed=seed)
    sub = manifest.subset(kept, names, labels=y, mode="easy")
    return manifest.make(names, [sub], "ids", {"alpha": 0.5, "mode": "easy"}, extractor={"name": "raw-pixels"})


def test_round_trip_and_same_bytes(digits, tmp_path):
    m = build(digits)
    a = manifest.write(tmp_path / "a.json", m)
    b = manifest.write(tmp_path / "b.json", build(digits))
    assert a.read_bytes() == b.read_bytes()
    back = manifest.read(a)
    x, y, names = digits
    kept = manifest.kept_indices(back, names)
    assert kept == ids.select(x, y, alpha=0.5).tolist()
    assert sum(back["subsets"][0]["per_class"].values()) == len(kept)
    assert back["params"] == {"alpha": 0.5, "mode": "easy"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_foreign_dataset_refused(digits, tmp_path):
    m = build(digits)
    _, _, names = digits
    with pytest.raises(manifest.ManifestMismatch, match="another dataset"):
        manifest.kept_indices(m, names[:-1])
    with pytest.raises(manifest.ManifestMismatch):
        manifest.verify(m, list(reversed(names)))


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        manifest.read(bad)
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a datareduce manifest"):
        manifest.read(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        manifest.read(tmp_path / "nope.json")


def test_empty_dataset_refused():
    with pytest.raises(ValueError, match="empty"):
        manifest.make([], [], "ids", {})


def test_interrupted_write_leaves_old_file_intact(tmp_path):
    """Kill a writer in the middle of a large atomic write: the target is either the old or no file, never torn."""
    target = tmp_path / "m.json"
    target.write_text("old")
    code = ("import sys; from datareduce.atomic import write_bytes\n"
            "class Slow(bytes):\n    pass\n"
            f"write_bytes({str(target)!r}, b'x' * (400 * 1024 * 1024))\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    import time
    for _ in range(200):
        if any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_text() == "old"
