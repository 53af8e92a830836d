"""Run the classification benchmark: every method one after another on the same machine, then summarise.

    python bench/run.py                                   # the README's table (hours on a 2-core CPU)
    python bench/run.py --methods full,adonis-eta3 --train-per-class 50 --test-per-class 20 --epochs 2 --seeds 0

CIFAR-10 from ../shared/data (JPEG, ImageFolder layout), the first N train / M test images of each class,
trained by trainers/classify.py with configs/cifar10-resnet20-cpu.yaml. Raw per-epoch JSON of each run goes to
<out>/runs/<method>/seed<k>/log.jsonl; a finished run (its log has a summary line) is never redone, an
interrupted one resumes from its checkpoint. Then <out>/summary.json, table.md and accuracy_vs_time.png.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench import data  # noqa: E402
from datareduce import records  # noqa: E402
from datareduce.atomic import write_text  # noqa: E402
from methods import PAPER_TABLE, classification_methods  # noqa: E402


def finished(run_dir: Path) -> bool:
    log = run_dir / records.LOG_NAME
    return log.exists() and any(r.get("type") == "summary" for r in records.read(log))


def keep_fraction(out: Path, method: str, seed: int) -> float:
    """The measured back-prop fraction of a finished run (for the random-keep control's budget)."""
    epochs = [r for r in records.read(out / "runs" / method / f"seed{seed}" / records.LOG_NAME) if r.get("type") == "epoch"]
    return sum(e["samples_backprop"] for e in epochs) / sum(e.get("forward_samples", e["train_samples"]) for e in epochs)


def run_one(cmd: list, run_dir: Path, label: str, resume: bool = True) -> None:
    """Run one trainer process, echoing its per-epoch lines; its full output goes to run_dir/output.txt.
    With ``resume``, an interrupted run continues from its checkpoint."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "checkpoint.pth"
    if resume and ckpt.exists():
        cmd = cmd + ["--resume", str(ckpt)]
    write_text(run_dir / "command.txt", shlex.join(cmd) + "\n")
    start = time.perf_counter()
    with open(run_dir / "output.txt", "a") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        for line in proc.stdout:
            out.write(line)
            if (line.startswith("Epoch ") and "top1" in line) or line.startswith("Training time") or "Error" in line:
                print(f"    {label}: {line.rstrip()}", flush=True)
        if proc.wait():
            raise SystemExit(f"{label} failed (exit {proc.returncode}); see {run_dir / 'output.txt'}")
    print(f"    {label}: done in {time.perf_counter() - start:.0f} s", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(PAPER_TABLE), help="comma-separated (see bench/methods.py)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--train-per-class", type=int, default=1000)
    p.add_argument("--test-per-class", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--config", default=str(REPO / "configs" / "cifar10-resnet20-cpu.yaml"))
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--extra", default="", help="more trainer flags, e.g. '--workers 2'")
    a = p.parse_args(argv)

    known = classification_methods(a.epochs)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from: {', '.join(known)}")
    if "full" not in methods:
        methods.insert(0, "full")
    if "random-keep" in methods and "adonis-eta3" not in methods:
        raise SystemExit("random-keep takes its budget from adonis-eta3: add adonis-eta3 to --methods")
    methods.sort(key=lambda m: m == "random-keep")  # the control runs after the run whose budget it copies

    root = data.cifar10_subset(a.train_per_class, a.test_per_class)
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "bench_command.txt", "a") as f:  # every invocation that wrote into this folder
        f.write(shlex.join([sys.executable, *sys.argv]) + "\n")
    write_text(a.out / "machine.json", json.dumps({"platform": platform.platform(), "processor": platform.processor(),
                                                   "python": platform.python_version(), "cpus": __import__("os").cpu_count(),
                                                   "date": time.strftime("%Y-%m-%d")}, indent=1) + "\n")
    measure_ceiling(a.out, a.config, a.extra)
    total = len(methods) * len(a.seeds)
    n = 0
    for seed in a.seeds:
        for method in methods:
            n += 1
            run_dir = a.out / "runs" / method / f"seed{seed}"
            label = f"[{n}/{total}] {method} seed {seed}"
            if finished(run_dir):
                print(f"{label}: already finished, skipped")
                continue
            flags = known[method]
            if "{adonis-eta3.keep_fraction}" in flags:
                budget = f"{keep_fraction(a.out, 'adonis-eta3', seed):.4f}"
                flags = [f.replace("{adonis-eta3.keep_fraction}", budget) for f in flags]
            milestones = [str(max(1, round(f * a.epochs))) for f in (0.3, 0.6, 0.8)]  # 60/120/160 of 200
            cmd = [sys.executable, str(REPO / "trainers" / "classify.py"), "--config", a.config,
                   "--data-path", str(root), "--epochs", str(a.epochs), "--lr-milestones", *milestones,
                   "--seed", str(seed),
                   "--output-dir", str(run_dir), *flags, *shlex.split(a.extra)]
            print(f"{label}: {shlex.join(flags) or '(no flags)'}", flush=True)
            run_one(cmd, run_dir, label)
    import summarize
    summarize.main([str(a.out)])


def measure_ceiling(out: Path, config: str, extra: str) -> None:
    """Forward-only vs full-step cost of the benchmark's model (the config's) on this machine and the device
    and precision that ``extra`` asks for (SPEC §6), once."""
    if (out / "ceiling.json").exists():
        return
    import torch
    import yaml

    from ceiling import measure
    from datareduce.models import get_model

    settings = yaml.safe_load(Path(config).read_text())
    flags = shlex.split(extra)
    device = flags[flags.index("--device") + 1] if "--device" in flags else "cpu"
    torch.manual_seed(0)
    name = settings.get("model", "resnet20")
    result = measure(get_model(name, num_classes=10), batch=int(settings.get("batch-size", 128)), device=device,
                     amp="--amp" in flags)
    write_text(out / "ceiling.json", json.dumps({"model": name, **result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
