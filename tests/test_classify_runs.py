"""trainers/classify.py keeps a run's folder honest: an existing run is never silently replaced, a resume never
silently ignores a changed flag (it refuses it, or for η and the history lengths uses it), a diverged run stops,
and Ctrl-C says how to continue."""
import json
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

from test_classify_helpers import REPO, SCRIPT, SMALL, env, log, run

pytestmark = pytest.mark.slow


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _error_line(proc, alone=True):
    """The one line an error prints (exit code 2, no traceback); ``alone``: nothing else on stderr (a refused
    start), else after the progress bars of the epochs it trained."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("classify.py:")] == lines[-1:], proc.stderr
    assert lines[-1].startswith("classify.py: error: ") and (len(lines) == 1 or not alone), proc.stderr
    return lines[-1]


def test_an_existing_run_is_not_overwritten(cifar10_small, tmp_path):
    out = tmp_path / "run"
    common = [*SMALL, "--epochs", "1", "--output-dir", out]
    run(["--data-path", cifar10_small, *common])
    before = _files(out)
    line = _error_line(run(["--data-path", cifar10_small, *common], check=False))
    assert line == (f"classify.py: error: --output-dir {out} already holds a run; pass --resume "
                    f"{out / 'checkpoint.pth'} to continue it, or --overwrite to replace it")
    # refused before any work: a missing data set is not even looked at, and nothing was written
    line = _error_line(run(["--data-path", tmp_path / "nope", *common], check=False))
    assert "already holds a run" in line
    assert _files(out) == before

    # --overwrite replaces it: one run in the log, the new one
    run(["--data-path", cifar10_small, *common, "--seed", "1", "--overwrite"])
    assert [r["type"] for r in log(out)] == ["run", "epoch", "summary"]
    assert log(out, "run")[0]["args"]["seed"] == 1
    assert torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=True)["args"]["seed"] == 1

    # not a run: a folder with the benchmark's command.txt / output.txt, and a start that never finished an epoch
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "command.txt").write_text("python trainers/classify.py\n")
    (fresh / "output.txt").write_text("Loading data\n")
    (fresh / "log.jsonl").write_text(json.dumps(log(out, "run")[0]) + "\n")
    run(["--data-path", cifar10_small, *SMALL, "--epochs", "1", "--output-dir", fresh])
    assert [r["type"] for r in log(fresh)] == ["run", "epoch", "summary"]


def test_resume_refuses_changed_settings_keeps_its_own_and_honours_a_new_eta(cifar10_small, tmp_path):
    out = tmp_path / "adonis"
    common = ["--data-path", cifar10_small, *SMALL, "--epochs", "3", "--adonis-eta", "3", "--output-dir", out]
    run([*common, "--stop-after", "1"])
    ckpt = out / "checkpoint.pth"
    before = _files(out)
    changed = ["--data-path", cifar10_small, *SMALL, "--epochs", "3", "--adonis-eta", "1", "--output-dir", out,
               "--lr", "0.05", "-b", "16", "--resume", ckpt]
    line = _error_line(run(changed, check=False))
    assert "the run was started with other settings" in line
    assert "--batch-size 32 → 16" in line and "--lr 0.1 → 0.05" in line and "--adonis-eta" not in line
    assert "start a new run" in line
    assert _files(out) == before
    # an ADONIS parameter left at its default shows the value the run used
    line = _error_line(run([*common, "--adonis-alpha", "0.5", "--resume", ckpt], check=False))
    assert "--adonis-alpha 0.3 → 0.5" in line

    # nothing but --resume (from another folder): the checkpoint's data, model and η=3, one more epoch
    run(["--resume", ckpt, "--stop-after", "1"], cwd=tmp_path)
    # the whole command again with another η (honoured: the cached losses keep the epoch they were scored in),
    # plus flags that do not change what is computed: the last epoch
    proc = run([*common, "--adonis-eta", "1", "--device", "cpu", "--workers", "0", "--resume", ckpt])
    assert "datareduce: resumed with --adonis-eta 3 → 1" in proc.stdout.splitlines()
    epochs = log(out, "epoch")
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    # epoch 0 warms up, epoch 1 scores every sample; η=3 would reuse those losses in epoch 2, η=1 scores again
    assert [e["samples_scored"] for e in epochs] == [0, 400, 400]
    assert all(e["forward_samples"] == 400 for e in epochs) and len(log(out, "summary")) == 1
    assert log(out, "resume") == [{"type": "resume", "epoch": 2, "changed": {"--adonis-eta": [3, 1]}}]
    args = torch.load(ckpt, map_location="cpu", weights_only=True)["args"]
    assert args["adonis_eta"] == 1 and args["data_path"] == str(cifar10_small) and args["batch_size"] == 32


def test_a_diverged_run_stops_and_keeps_the_last_good_checkpoint(cifar10_small, tmp_path):
    out = tmp_path / "diverged"
    # epoch 0 warms up at lr 0.1, epoch 1 trains at lr 1e6 and its loss becomes nan
    common = ["--data-path", cifar10_small, *SMALL, "--epochs", "3", "--lr", "1e6", "--lr-warmup-epochs", "1",
              "--lr-warmup-decay", "1e-7"]
    line = _error_line(run([*common, "--output-dir", out], check=False), alone=False)
    assert line.startswith("classify.py: error: epoch 1: the training loss is not finite (nan)")
    assert "try a lower --lr" in line and "--allow-nonfinite" in line
    assert f"the last good checkpoint (epoch 0) is kept: {out / 'checkpoint.pth'}" in line
    assert torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=True)["epoch"] == 0
    assert [e["epoch"] for e in log(out, "epoch")] == [0, 1] and not log(out, "summary")

    # --allow-nonfinite trains on; nonfinite_losses is each epoch's own count, not a running total
    out = tmp_path / "allowed"
    run(["--data-path", cifar10_small, *SMALL, "--epochs", "4", "--lr", "1e6", "--adonis-eta", "2",
         "--allow-nonfinite", "--output-dir", out])
    epochs = log(out, "epoch")
    assert len(epochs) == 4 and len(log(out, "summary")) == 1
    assert any(e["train_loss"] is not None and e["train_loss"] != e["train_loss"] for e in epochs)  # nan
    ckpt = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=True)
    total = ckpt["selection"][0]["selector"]["nonfinite"]
    assert total > 0 and sum(e["nonfinite_losses"] for e in epochs) == total
    assert all(0 <= e["nonfinite_losses"] <= e["forward_samples"] for e in epochs)
    assert epochs[0]["nonfinite_losses"] == 0  # the first epoch still had finite losses


def test_ctrl_c_says_how_to_resume(cifar10_small, tmp_path):
    out = tmp_path / "interrupted"
    cmd = [sys.executable, str(SCRIPT), "--data-path", str(cifar10_small), *SMALL, "--epochs", "3",
           "--output-dir", str(out)]
    with open(tmp_path / "stdout", "w") as so, open(tmp_path / "stderr", "w") as se:
        # a process started from a background job inherits SIGINT ignored, and Python then never raises
        # KeyboardInterrupt: give the trainer the disposition a terminal gives it, whatever runs the suite
        proc = subprocess.Popen(cmd, stdout=so, stderr=se, env=env(), cwd=REPO,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pth").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # into epoch 1
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    stderr = (tmp_path / "stderr").read_text()
    assert rc == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("classify.py: interrupted; the last checkpoint (epoch 0) is ")
    command = last.split("continue with: ", 1)[1]
    assert command.endswith(f"--resume {out / 'checkpoint.pth'}")
    # the printed command continues the run to its end
    subprocess.run(shlex.split(command), env=env(), cwd=REPO, check=True, capture_output=True, timeout=180)
    assert [e["epoch"] for e in log(out, "epoch")] == [0, 1, 2] and len(log(out, "summary")) == 1
