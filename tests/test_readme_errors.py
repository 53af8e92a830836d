"""README's "What you see when the input is wrong" table, run for real: every row's command, in a folder laid out
as the README says, exits with code 2, prints no traceback, writes nothing, and prints exactly the row's message
(so the table cannot drift from the programs)."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_classify_helpers import env

REPO = Path(__file__).resolve().parents[1]
SECTION = "### What you see when the input is wrong"
ROW = re.compile(r"^\| (?P<what>[^|`]+?) \| `(?P<command>[^`]+)` \| `(?P<message>[^`]+)` \|$")
PROGRAMS = {"classify.py": [sys.executable, str(REPO / "trainers" / "classify.py")],
            "yolo_train.py": [sys.executable, str(REPO / "trainers" / "yolo_train.py")],
            "datareduce": [sys.executable, "-m", "datareduce.cli"]}


def readme_rows():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1].split("\n#", 1)[0]
    return [m.groupdict() for m in map(ROW.match, section.splitlines()) if m]


ROWS = readme_rows()


def test_the_table_is_there_and_covers_what_users_get_wrong():
    kinds = {r["what"] for r in ROWS}
    assert len(ROWS) >= 15
    for kind in ("a parameter out of range", "no data at the path", "a corrupt or empty image",
                 "an output folder that cannot be written", "weights not on disk", "the output folder holds a run",
                 "a flag changed on resume", "the training loss is not finite"):
        assert kind in kinds, kind
    assert {shlex.split(r["command"])[0] for r in ROWS} == set(PROGRAMS)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, cifar10_small, coco128_root):
    """The folder the README's commands run in: data/, bad/, coco/, done/ and afile."""
    root = tmp_path_factory.mktemp("readme-errors")
    (root / "data").symlink_to(cifar10_small)
    (root / "coco").symlink_to(coco128_root)
    images = sorted((cifar10_small / "train" / "cat").iterdir())
    for split, cls, name, source in (("train", "a", "0.jpg", images[0]), ("train", "a", "1.jpg", images[1]),
                                     ("train", "b", "0.jpg", images[2]), ("val", "a", "0.jpg", images[0]),
                                     ("val", "b", "0.jpg", images[2])):
        (root / "bad" / split / cls).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / "bad" / split / cls / name)
    (root / "bad" / "train" / "b" / "empty.jpg").write_bytes(b"")
    (root / "afile").write_text("a plain file\n")
    done = subprocess.run([*PROGRAMS["classify.py"], "--data-path", "data", "--output-dir", "done", "--model",
                           "resnet20", "--epochs", "1", "--workers", "0"], cwd=root, env=env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def _tree(root):
    """Every path under ``root`` (links not followed) with its size and mtime: what a command may not change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def _expected(message):
    """The README message as a pattern: ``<weights_dir>`` stands for a path, the rest is literal."""
    return re.compile("".join(r"\S+" if part == "<weights_dir>" else re.escape(part)
                              for part in re.split(r"(<weights_dir>)", message)) + r"\Z")


@pytest.mark.parametrize("row", ROWS, ids=[r["command"] for r in ROWS])
def test_each_row_prints_its_message(folder, row):
    argv = shlex.split(row["command"])
    before = _tree(folder)
    proc = subprocess.run([*PROGRAMS[argv[0]], *argv[1:]], cwd=folder, env=env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert _expected(row["message"]).match(lines[-1]), f"README: {row['message']}\nprinted: {lines[-1]}"
    after = _tree(folder)
    if "not finite" in row["what"]:  # it trained an epoch: its log and counts stay, no checkpoint of that epoch
        new = sorted(set(after) - set(before))
        assert new == ["nan", "nan/log.jsonl", "nan/selection_counts.npy"], new
        after = {k: v for k, v in after.items() if k not in new}
    else:  # refused before any work: one line, nothing else on stderr
        assert len(lines) == 1, proc.stderr
    assert after == before, "a refused command wrote into its folder"
