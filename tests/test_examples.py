"""The examples in examples/ (ADONIS, RS2, InfoBatch and IDS in a plain PyTorch loop) run as their docstrings say,
and where a selection does not depend on the model (RS2, IDS) they select exactly what trainers/classify.py does.

ADONIS and InfoBatch select from the losses of the model being trained; the examples train a small MLP, the
trainer a ResNet, so their selections are not expected to match."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from datareduce.datasets import DigitsDataset
from test_classify_helpers import SCRIPT as TRAINER_SCRIPT
from test_classify_helpers import env

REPO = Path(__file__).resolve().parents[1]
N = len(DigitsDataset(train=True))  # the trainers' embedded digits, which the examples train on
# Neither selection depends on the model the trainer trains: the smallest one keeps its run short.
TRAINER = ["--model", "mobilenet_v3_small", "--print-freq", "1000"]


def run(script, *args):
    """Run examples/<script> as a user would; its stdout lines."""
    proc = subprocess.run([sys.executable, str(REPO / "examples" / script), *map(str, args)], capture_output=True,
                          text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(Path.home())})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()


def start_trainer(tmp_path, *args):
    """Start trainers/classify.py with its output in ``tmp_path``/trainer; it runs while the example does (the
    suite itself keeps one core busy)."""
    with open(tmp_path / "trainer.txt", "w") as console:
        return subprocess.Popen([sys.executable, str(TRAINER_SCRIPT), *TRAINER, *map(str, args), "--output-dir",
                                 str(tmp_path / "trainer")], cwd=REPO, env=env(), stdout=console,
                                stderr=subprocess.STDOUT)


def finish(trainer, tmp_path):
    assert trainer.wait(timeout=300) == 0, (tmp_path / "trainer.txt").read_text()[-3000:]


def closing_line(method, lines, epochs):
    """(top-1, samples back-propagated) from an example's last line."""
    m = re.fullmatch(rf"{method}: top-1 ([\d.]+)% after {epochs} epochs, (\d+) of {epochs * N} sample "
                     r"back-propagations \(\d+%\)", lines[-1])
    assert m, lines[-1]
    return float(m.group(1)), int(m.group(2))


def test_plain_loop_with_adonis_trains_on_fewer_samples_and_learns():
    lines = run("plain_loop_adonis.py", "--epochs", "4")
    top1, backprop = closing_line("ADONIS", lines, 4)
    assert N < backprop < 4 * N / 2  # epoch 0 trains every sample (ω = 0), the later ones about α = 0.3
    assert top1 > 50  # ten classes: chance is 10 %
    assert all(re.fullmatch(r"epoch +\d: top-1 +[\d.]+%  kept [01]\.\d\d of the epoch", line) for line in lines[:-1])
    assert closing_line("full data", run("plain_loop_adonis.py", "--epochs", "4", "--full"), 4)[1] == 4 * N


def test_plain_loop_with_rs2_trains_what_the_trainer_trains(tmp_path):
    """RS2 trains exactly its fraction each epoch, and the same samples as trainers/classify.py --reduce rs2 with
    the same fraction and seed."""
    trainer = start_trainer(tmp_path, "--reduce", "rs2", "--rs2-fraction", "0.25", "--epochs", "4",
                            "--seed", "1")
    try:
        lines = run("plain_loop_rs2_infobatch.py", "--method", "rs2", "--fraction", "0.25", "--epochs", "4",
                    "--seed", "1", "--counts", tmp_path / "counts.npy")
    finally:
        finish(trainer, tmp_path)
    per_epoch = -(-N // 4)  # ⌈0.25 · N⌉
    assert all(line.endswith(f"visited {per_epoch} of {N}") for line in lines[:-1])
    top1, backprop = closing_line("rs2", lines, 4)
    assert top1 > 50 and backprop == 4 * per_epoch
    ours, theirs = np.load(tmp_path / "counts.npy"), np.load(tmp_path / "trainer" / "selection_counts.npy")
    assert ours.shape == theirs.shape == (N,) and (ours == theirs).all()


def test_plain_loop_with_infobatch_prunes_and_learns():
    """InfoBatch prunes some samples after epoch 0, trains the last epoch in full, and learns."""
    lines = run("plain_loop_rs2_infobatch.py", "--method", "infobatch", "--epochs", "4")
    visited = [int(re.search(rf"visited (\d+) of {N}", line).group(1)) for line in lines[:-1]]
    assert visited[0] == N and min(visited[1:3]) < N and visited[3] == N  # δ 0.875: the last epoch full
    top1, backprop = closing_line("infobatch", lines, 4)
    assert top1 > 50 and backprop == sum(visited)


def test_plain_loop_with_ids_selects_what_the_trainer_selects(tmp_path):
    """examples/plain_loop_ids.py keeps exactly the samples trainers/classify.py --ids-alpha keeps (same data, α,
    extractor and seed: the same manifest) and trains on those alone."""
    trainer = start_trainer(tmp_path, "--ids-alpha", "0.3", "--ids-image-size", "32", "--epochs", "1",
                            "--seed", "1", "--ids-cache-dir", tmp_path / "embeddings")
    try:
        lines = run("plain_loop_ids.py", "--alpha", "0.3", "--image-size", "32", "--epochs", "3", "--seed", "1",
                    "--manifest", tmp_path / "example.json")
    finally:
        finish(trainer, tmp_path)
    ours = json.loads((tmp_path / "example.json").read_text())
    theirs = json.loads((tmp_path / "trainer" / "manifest.json").read_text())
    for m in (ours, theirs):
        m["extractor"].pop("cache_dir")  # where the trainer cached its embeddings (the example keeps none)
    assert ours == theirs  # dataset fingerprint, parameters, extractor (weights, size, normalisation), kept ids
    kept, = [s["kept"] for s in theirs["subsets"]]
    assert 0.3 * N <= len(kept) < 0.3 * N + 20  # ⌈0.3 · L⌉ per class, plus at most one prototype each
    counts = np.load(tmp_path / "trainer" / "selection_counts.npy")
    keys = DigitsDataset(train=True).sample_keys()
    assert [keys[i] for i in np.flatnonzero(counts)] == kept  # the trainer trained on exactly those
    assert lines[0].startswith(f"IDS kept {len(kept)} of {N} training images")
    top1, backprop = closing_line("IDS", lines, 3)
    assert backprop == 3 * len(kept) and top1 > 50
