"""The examples in examples/ (ADONIS, RS2 and InfoBatch in a plain PyTorch loop) run as their docstrings say."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "plain_loop_adonis.py"


def run(*args):
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(Path.home())})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()


def test_plain_loop_with_adonis_trains_on_fewer_samples_and_learns():
    lines = run("--epochs", "4")
    m = re.fullmatch(r"ADONIS: top-1 ([\d.]+)% after 4 epochs, (\d+) of 5600 sample back-propagations \((\d+)%\)",
                     lines[-1])
    assert m, lines[-1]
    top1, backprop = float(m.group(1)), int(m.group(2))
    assert 1400 < backprop < 5600 / 2  # epoch 0 trains every sample (ω = 0), the later ones about α = 0.3
    assert top1 > 50  # ten classes: chance is 10 %
    assert all(re.fullmatch(r"epoch +\d: top-1 +[\d.]+%  kept [01]\.\d\d of the epoch", line) for line in lines[:-1])
    full = run("--epochs", "4", "--full")
    assert full[-1].startswith("full data: top-1 ") and "5600 of 5600" in full[-1]


def test_plain_loop_with_rs2_and_infobatch():
    """examples/plain_loop_rs2_infobatch.py: RS2 trains exactly its fraction each epoch, InfoBatch prunes some
    samples after epoch 0, and both learn."""
    script = REPO / "examples" / "plain_loop_rs2_infobatch.py"
    proc = subprocess.run([sys.executable, str(script), "--method", "rs2", "--fraction", "0.25", "--epochs", "4"],
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(Path.home())})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert all(line.endswith("visited 350 of 1400") for line in lines[:-1])  # ⌈0.25 · 1400⌉ each epoch
    m = re.fullmatch(r"rs2: top-1 ([\d.]+)% after 4 epochs, 1400 of 5600 sample back-propagations \(25%\)", lines[-1])
    assert m and float(m.group(1)) > 50, lines[-1]
    proc = subprocess.run([sys.executable, str(script), "--method", "infobatch", "--epochs", "4"],
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(Path.home())})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    visited = [int(re.search(r"visited (\d+) of 1400", line).group(1)) for line in lines[:-1]]
    assert visited[0] == 1400 and min(visited[1:3]) < 1400 and visited[3] == 1400  # δ 0.875: the last epoch full
    m = re.fullmatch(r"infobatch: top-1 ([\d.]+)% after 4 epochs, (\d+) of 5600 .*", lines[-1])
    assert m and float(m.group(1)) > 50 and int(m.group(2)) == sum(visited), lines[-1]
