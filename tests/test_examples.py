"""examples/plain_loop_adonis.py, ADONIS in a plain PyTorch loop, runs as its docstring says."""
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
