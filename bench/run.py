"""Run the classification benchmark: every method on the same machine, then summarise.

    python bench/run.py --protocol long                  # the long protocol's table (many hours on a 2-core CPU)
    python bench/run.py --protocol long --parallel 2 --methods full,full-c0.5,adonis-eta3 --seeds 0 1 2
    python bench/run.py --methods full,adonis-eta3 --train-per-class 50 --test-per-class 20 --epochs 2 --seeds 0

Two protocols (``bench/README.md`` says why): ``short`` (5,000 train / 3,000 test images, 12 epochs, the paper's
multistep schedule scaled; quick iteration) and ``long`` (10,000 train / the full 10,000 test images, 30 epochs,
cosine; near convergence). CIFAR-10 from ../shared/data (JPEG, ImageFolder layout), the first N train / M test
images of each class, trained by trainers/classify.py. Methods: bench/methods.py — the paper's table, the
compute-matched full frontier ``full-c<c>`` (full data for c × the epochs, the schedule compressed), and random
controls at another method's measured budget (``rs2@adonis-eta3``, ``random-keep@infobatch``, …).

Raw per-epoch JSON of each run goes to <out>/runs/<method>/seed<k>/log.jsonl; a finished run (its log has a
summary line) is never redone, an interrupted one resumes from its checkpoint. ``--parallel K`` runs K at a time
at one thread each: fine for accuracy and counted cost, but their wall times are contended, which the summary
marks (``conditions.json`` in each run folder). Then <out>/summary.json, table.md and the plots.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
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
from methods import PAPER_TABLE, budget_methods, classification_methods, frontier_epochs, frontier_methods  # noqa: E402

PROTOCOLS = {
    "short": {"train_per_class": 500, "test_per_class": 300, "epochs": 12, "config": "cifar10-resnet20-cpu.yaml",
              "out": "results"},
    "long": {"train_per_class": 1000, "test_per_class": 1000, "epochs": 30, "config": "cifar10-resnet20-long.yaml",
             "out": "results-long"},
}
BUDGET = re.compile(r"\{([\w.+-]+)\.backprop_fraction\}")


def finished(run_dir: Path) -> bool:
    log = run_dir / records.LOG_NAME
    return log.exists() and any(r.get("type") == "summary" for r in records.read(log))


def backprop_fraction(out: Path, method: str, seed: int) -> float:
    """A finished run's samples back-propagated over the full run's (training set × epochs)."""
    recs = records.read(out / "runs" / method / f"seed{seed}" / records.LOG_NAME)
    run = next(r for r in recs if r.get("type") == "run")
    epochs = [r for r in recs if r.get("type") == "epoch"]
    return sum(e["samples_backprop"] for e in epochs) / (run["num_train"] * run["args"]["epochs"])


def depends_on(flags: list) -> set:
    return {m for f in flags for m in BUDGET.findall(f)}


def trainer_command(a, root: Path, method: str, flags: list, seed: int, run_dir: Path) -> list:
    epochs = a.epochs
    if method.startswith("full-c"):
        epochs = frontier_epochs(float(method[len("full-c"):]), a.epochs)
    flags = [BUDGET.sub(lambda m: f"{backprop_fraction(a.out, m.group(1), seed):.4f}", f) for f in flags]
    cmd = [sys.executable, str(REPO / "trainers" / "classify.py"), "--config", a.config, "--data-path", str(root),
           "--epochs", str(epochs), "--seed", str(seed), "--output-dir", str(run_dir), *flags, *shlex.split(a.extra)]
    if a.multistep:  # the paper's milestones 60/120/160 of 200, scaled to this run's epochs
        cmd += ["--lr-milestones", *[str(max(1, round(f * epochs))) for f in (0.3, 0.6, 0.8)]]
    return cmd


TRAINER_SCRIPTS = (b"trainers/classify.py", b"trainers/yolo_train.py", b"bench/authors_infobatch.py")


def trainer_pids() -> set | None:
    """The process ids of running benchmark trainers (``TRAINER_SCRIPTS``), e.g. another runner's, this process
    left out; their presence makes a run's wall time contended. A paused trainer (SIGSTOP) or a zombie takes no
    CPU and is not counted. None where /proc cannot tell (not Linux)."""
    if not Path("/proc").is_dir():
        return None
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
            state = (cmdline.parent / "stat").read_text().rpartition(")")[2].split()[0]  # after "pid (comm)"
        except (OSError, IndexError):  # the process ended while we looked
            continue
        if state not in ("T", "t", "Z") and any(a.endswith(TRAINER_SCRIPTS) for a in args):
            pids.add(int(cmdline.parent.name))
    return pids - {os.getpid()}


def run_conditions(parallel: int, threads: int) -> dict:
    """How a run starts, for its ``conditions.json``: runs at a time, its threads, the benchmark trainers already
    running (the summary takes its wall time as quiet only when alone) and the load average."""
    pids = trainer_pids()
    return {"parallel": parallel, "threads": threads, "started": time.strftime("%F %T"),
            "other_trainers_at_start": None if pids is None else len(pids),  # another runner's jobs: not quiet
            "load_at_start": [round(x, 2) for x in os.getloadavg()]}


def threads_of(env: dict, classify: bool) -> int:
    """The CPU threads the trainer will use: Ultralytics' own CPU default for yolo_train.py (it sets torch's
    threads itself); for classify.py OMP_NUM_THREADS where set, else torch's default (every core)."""
    if not classify:
        from ultralytics.utils import NUM_THREADS
        return NUM_THREADS
    return int(env.get("OMP_NUM_THREADS") or os.cpu_count())


def start(cmd: list, run_dir: Path, label: str, parallel: int, classify: bool = True):
    """Start one trainer process (for trainers/classify.py: resuming an interrupted run from its checkpoint);
    its output goes to run_dir/output.txt. With ``parallel`` > 1 it gets one thread."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "checkpoint.pth"
    if classify and ckpt.exists():
        cmd = cmd + ["--resume", str(ckpt)]
    elif classify and (run_dir / records.LOG_NAME).exists():  # killed before its checkpoint: start it again
        cmd = cmd + ["--overwrite"]
    write_text(run_dir / "command.txt", shlex.join(cmd) + "\n")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if parallel > 1:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    write_text(run_dir / "conditions.json", json.dumps(run_conditions(parallel, threads_of(env, classify))) + "\n")
    out = open(run_dir / "output.txt", "a")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    if classify:  # a detection runner says what it starts itself
        print(f"{label}: started ({shlex.join(cmd[cmd.index('--epochs'):cmd.index('--epochs') + 2])} "
              f"{shlex.join(cmd[cmd.index('--output-dir') + 2:]) or ''})", flush=True)
    return proc, out, time.perf_counter()


def run_one(cmd: list, run_dir: Path, label: str) -> None:
    """Run one (detection) trainer process to its end, quietly (one at a time); SystemExit if it fails."""
    proc, out, t0 = start(cmd, run_dir, label, parallel=1, classify=False)
    proc.wait()
    out.close()
    if proc.returncode:
        raise SystemExit(f"{label} failed (exit {proc.returncode}); see {run_dir / 'output.txt'}")
    print(f"{label}: done in {time.perf_counter() - t0:.0f} s", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=PROTOCOLS, default="short")
    p.add_argument("--methods", default=None, help="comma-separated (see bench/methods.py; default: the paper's table)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", default=None, help="comma-separated method:seed pairs, run in this order (instead of "
                   "--methods × --seeds; e.g. to finish one seed of a method before starting another)")
    p.add_argument("--train-per-class", type=int, default=None)
    p.add_argument("--test-per-class", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--config", default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--parallel", type=int, default=1, help="runs at a time, one thread each when > 1 (accuracy only)")
    p.add_argument("--extra", default="", help="more trainer flags, e.g. '--workers 2'")
    a = p.parse_args(argv)
    proto = PROTOCOLS[a.protocol]
    for key in ("train_per_class", "test_per_class", "epochs"):
        if getattr(a, key) is None:
            setattr(a, key, proto[key])
    a.config = a.config or str(REPO / "configs" / proto["config"])
    a.out = a.out or HERE / proto["out"]
    import yaml
    a.multistep = yaml.safe_load(Path(a.config).read_text()).get("lr-scheduler") == "multisteplr"

    known = {**classification_methods(a.epochs), **frontier_methods(), **budget_methods()}
    if a.jobs:
        try:
            jobs = [(m.strip(), int(s)) for m, s in (j.rsplit(":", 1) for j in a.jobs.split(",") if j.strip())]
        except ValueError:
            raise SystemExit(f"--jobs {a.jobs!r}: expected method:seed pairs, e.g. full:1,adonis-eta3:0")
        methods = list(dict.fromkeys(m for m, _ in jobs))
        a.seeds = sorted({s for _, s in jobs})
    else:
        methods = [m.strip() for m in (a.methods or ",".join(PAPER_TABLE)).split(",") if m.strip()]
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from: {', '.join(known)}")
    if "full" not in methods and not a.jobs:
        methods.insert(0, "full")
    if "random-keep" in methods:  # the paper-table control copies ADONIS η=3's budget
        known["random-keep"] = known["random-keep@adonis-eta3"]
    for m in methods:
        missing = depends_on(known[m]) - set(methods)
        if missing and not all(finished(a.out / "runs" / d / f"seed{s}") for d in missing for s in a.seeds):
            raise SystemExit(f"{m} takes its budget from {', '.join(sorted(missing))}: add it to --methods")

    root = data.cifar10_subset(a.train_per_class, a.test_per_class)
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "bench_command.txt", "a") as f:  # every invocation that wrote into this folder
        f.write(shlex.join([sys.executable, *sys.argv]) + "\n")
    write_text(a.out / "protocol.json", json.dumps({"protocol": a.protocol, "train_per_class": a.train_per_class,
                                                    "test_per_class": a.test_per_class, "epochs": a.epochs,
                                                    "config": Path(a.config).name}, indent=1) + "\n")
    write_text(a.out / "machine.json", json.dumps({"platform": platform.platform(), "processor": platform.processor(),
                                                   "python": platform.python_version(), "cpus": os.cpu_count(),
                                                   "date": time.strftime("%Y-%m-%d")}, indent=1) + "\n")
    measure_ceiling(a.out, a.config, a.extra)

    if not a.jobs:
        jobs = [(m, s) for s in a.seeds for m in methods]
    total, running, failed = len(jobs), [], []
    labels = {job: f"[{i + 1}/{total}] {job[0]} seed {job[1]}" for i, job in enumerate(jobs)}
    pending = []
    for job in jobs:
        if finished(a.out / "runs" / job[0] / f"seed{job[1]}"):
            print(f"{labels[job]}: already finished, skipped")
        else:
            pending.append(job)
    while pending or running:
        for job in list(pending):
            if len(running) >= a.parallel:
                break
            method, seed = job
            deps = depends_on(known[method])
            if any(not finished(a.out / "runs" / d / f"seed{seed}") for d in deps):
                if any(d == j[0] and seed == j[1] for d in deps for j in failed):
                    pending.remove(job)
                    failed.append(job)
                    print(f"{labels[job]}: skipped, the run it takes its budget from failed")
                continue
            pending.remove(job)
            run_dir = a.out / "runs" / method / f"seed{seed}"
            cmd = trainer_command(a, root, method, known[method], seed, run_dir)
            running.append((job, run_dir, *start(cmd, run_dir, labels[job], a.parallel)))
        if not running and pending:  # waiting on a dependency that cannot come
            raise SystemExit(f"cannot schedule {pending}: their budget runs are not in this invocation")
        time.sleep(2)
        for item in list(running):
            job, run_dir, proc, out, t0 = item
            if proc.poll() is None:
                continue
            out.close()
            running.remove(item)
            if proc.returncode:
                failed.append(job)
                print(f"{labels[job]}: FAILED (exit {proc.returncode}); see {run_dir / 'output.txt'}", flush=True)
            else:
                print(f"{labels[job]}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    import summarize
    summarize.main([str(a.out)])
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {failed}")


def measure_ceiling(out: Path, config: str, extra: str) -> None:
    """The cost of a no-grad scoring forward relative to a training step (forward_over_step, the f of the
    counted cost), for the config's model on this machine and the device/precision ``extra`` asks for, once
    (bench/ceiling.py's ensure_ceiling: a busy machine reuses a quiet measurement of the same model)."""
    import torch
    import yaml

    from ceiling import ensure_ceiling, measure
    from datareduce.models import get_model

    settings = yaml.safe_load(Path(config).read_text())
    flags = shlex.split(extra)
    device = flags[flags.index("--device") + 1] if "--device" in flags else "cpu"
    name, batch, amp = settings.get("model", "resnet20"), int(settings.get("batch-size", 128)), "--amp" in flags

    def measured():
        torch.manual_seed(0)
        return measure(get_model(name, num_classes=10), batch=batch, device=device, amp=amp)

    ensure_ceiling(out, {"model": name, "batch": batch, "device": device, "amp": amp}, measured)


if __name__ == "__main__":
    main()
