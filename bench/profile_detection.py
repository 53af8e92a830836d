"""Where a detection epoch's wall time goes, per method: the synthetic protocol through trainers/yolo_train.py.

    python bench/profile_detection.py                           # full, ids, adonis-prune; 3 epochs each
    python bench/profile_detection.py --methods adonis-prune --epochs 5

Each method trains in this process through trainers/yolo_train.py's ``train()`` (its trainer class, the flags of
bench/methods.py's ``detection_methods`` and the Ultralytics arguments of bench/detection.py's synthetic protocol:
same data, model, image size, batch, workers, seed), with the protocol's schedule (``--schedule-epochs``, default
the protocol's 30: learning rate, ADONIS's warm-up epoch 0 and its annealed last 1/8 are those of the real run)
stopped after ``--epochs`` epochs. ADONIS selects from epoch 1 on (epoch 0 is its ω = 0 warm-up), so the default
3 epochs hold two selecting epochs. Timers wrap the real calls (exclusive time: a part nested in another is
counted once, in the inner one):

- data: time blocked in the training DataLoader's ``__next__`` (reading, decoding, augmentation, mosaic where
  it is on, collation; Ultralytics trains on the CPU with workers=0, so all of it is in this process);
- forward_loss: ``preprocess_batch`` and the training model's forward and criterion (``BaseModel.loss``);
- per_image_loss: datareduce's ``PerImageDetectionLoss.terms`` (the training criterion of ADONIS reusing training
  losses / InfoBatch, and the loss of every scoring forward);
- backward_step: ``Tensor.backward`` and ``optimizer_step`` (optimizer, EMA update);
- scoring: the trainer's ``score`` (ADONIS's no-grad scoring forward) less its per-image loss;
- selection: datareduce's bookkeeping: ``ReducedTrainLoader``/``OnlineSelection`` iteration (ADONIS selection,
  accumulation to rho, batch booking) less data and scoring, ``image_indices`` and the per-epoch hooks;
- validation: ``validate()``; checkpoint: ``save_model()``;
- rest: the epoch's wall time less all of the above (Ultralytics' loop: scheduler, warm-up, progress bar, loss
  averaging, results.csv).

An epoch runs from its ``on_train_epoch_start`` to the end of its ``on_fit_epoch_end``. One-offs: the setup
(trainer construction to the first epoch, IDS selection and embedding within it) and the final evaluation.
<out>/profile.json holds the raw seconds per epoch per part per method, the command and the conditions (threads,
other trainers, load, nice; as bench/run.py records them), written after each method; <out>/profile.md the table
(seconds per epoch and share of the epoch). Weights go to ``--runs-dir`` (outside the project).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import shlex
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench import detection, detection_data  # noqa: E402
from bench.methods import detection_methods  # noqa: E402
from bench.run import threads_of, trainer_pids  # noqa: E402
from datareduce._validate import UsageError  # noqa: E402
from datareduce.atomic import write_text  # noqa: E402
from datareduce.paths import cache_root  # noqa: E402

PROTOCOL = detection.PROTOCOLS["synthetic"]
DEFAULT_METHODS = "full,ids,adonis-prune"
PARTS = {
    "data": "data loading + augmentation (train DataLoader __next__)",
    "forward_loss": "training forward + loss",
    "per_image_loss": "per-image loss (PerImageDetectionLoss)",
    "backward_step": "backward + optimizer step (incl. EMA)",
    "scoring": "ADONIS scoring forward",
    "selection": "selection / bookkeeping (datareduce)",
    "validation": "validation",
    "checkpoint": "checkpoint (save_model)",
}


def methods_allowed(epochs: int) -> list:
    """The detection bench's methods that train for the protocol's epochs (not the ``full-c`` frontier points)."""
    return [m for m in detection_methods(epochs) if not m.startswith("full-c")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default: {DEFAULT_METHODS})")
    p.add_argument("--epochs", type=int, default=3, help="epochs profiled per method (default 3)")
    p.add_argument("--schedule-epochs", type=int, default=PROTOCOL["epochs"],
                   help=f"the run's epochs as the trainer sees them (schedule, ADONIS anneal; default the "
                        f"protocol's {PROTOCOL['epochs']}); training stops after --epochs")
    p.add_argument("--batch", type=int, default=PROTOCOL["batch"])
    p.add_argument("--workers", type=int, default=PROTOCOL["workers"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results-detection" / "profile")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="where Ultralytics trains (default: under $DATAREDUCE_CACHE or ~/.cache/datareduce, "
                        "detection-runs/)")
    p.add_argument("--verbose", action="store_true", help="Ultralytics' own output too")
    g = p.add_argument_group("the synthetic set (bench/detection_data.py)")
    detection_data.add_build_arguments(g)
    return p.parse_args(argv)


def check(a) -> list:
    """The methods to profile; UsageError naming the bad value and what is allowed."""
    allowed = methods_allowed(a.schedule_epochs if a.schedule_epochs and a.schedule_epochs > 0 else 1)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in allowed]
    if unknown or not methods:
        raise UsageError(f"--methods {a.methods!r}: unknown {', '.join(unknown) or '(none given)'}; choose from "
                         f"{', '.join(allowed)}")
    for flag, value in (("--epochs", a.epochs), ("--schedule-epochs", a.schedule_epochs), ("--batch", a.batch)):
        if value < 1:
            raise UsageError(f"{flag} {value}: must be at least 1")
    if a.schedule_epochs < a.epochs:
        raise UsageError(f"--schedule-epochs {a.schedule_epochs}: must be at least --epochs ({a.epochs})")
    if a.workers < 0:
        raise UsageError(f"--workers {a.workers}: must be 0 or more")
    if a.seed < 0:
        raise UsageError(f"--seed {a.seed}: must be 0 or more")
    return methods


# ------------------------------------------------------------------------------------------------ the timers
class Profiler:
    """Exclusive wall time per named part: entering a part pauses the one it is nested in."""

    def __init__(self):
        self.stack, self.totals, self.calls = [], defaultdict(float), defaultdict(int)

    def top(self):
        return self.stack[-1][0] if self.stack else None

    @contextlib.contextmanager
    def part(self, name, under=None, not_under=()):
        """Time the block as ``name``, unless the part it is nested in is not in ``under`` (None: any) or is in
        ``not_under`` (then it stays in that part)."""
        top = self.top()
        if (under is not None and top not in under) or top in not_under:
            yield
            return
        now = time.perf_counter()
        if self.stack:
            self.totals[top] += now - self.stack[-1][1]
        self.stack.append([name, now])
        try:
            yield
        finally:
            now = time.perf_counter()
            name, start = self.stack.pop()
            self.totals[name] += now - start
            self.calls[name] += 1
            if self.stack:
                self.stack[-1][1] = now

    def snapshot(self) -> dict:
        return dict(self.totals)


PROF = Profiler()


def timed_method(fn, name, **where):
    def wrapper(*args, **kwargs):
        with PROF.part(name, **where):
            return fn(*args, **kwargs)
    wrapper.__wrapped__ = fn
    return wrapper


def timed_iter(fn, name, **where):
    """An ``__iter__`` whose every ``__next__`` is timed as ``name`` (the time spent between them is not)."""
    def wrapper(self):
        it = fn(self)
        while True:
            with PROF.part(name, **where):
                try:
                    item = next(it)
                except StopIteration:
                    return
            yield item
    wrapper.__wrapped__ = fn
    return wrapper


def install_timers():
    """Wrap the library and Ultralytics calls the parts are made of (in this process only)."""
    import torch
    from ultralytics.data.build import InfiniteDataLoader
    from ultralytics.nn.tasks import BaseModel

    from datareduce.integrations import ultralytics as dr_yolo
    from datareduce.integrations.ultralytics_loss import PerImageDetectionLoss

    # the training loop iterates the ReducedTrainLoader; only the DataLoader it pulls from is training data
    dr_yolo.ReducedTrainLoader.__iter__ = timed_iter(dr_yolo.ReducedTrainLoader.__iter__, "selection")
    InfiniteDataLoader.__iter__ = timed_iter(InfiniteDataLoader.__iter__, "data", under=("selection",))
    BaseModel.loss = timed_method(BaseModel.loss, "forward_loss", not_under=("validation", "scoring"))
    PerImageDetectionLoss.terms = timed_method(PerImageDetectionLoss.terms, "per_image_loss",
                                               not_under=("validation",))
    torch.Tensor.backward = timed_method(torch.Tensor.backward, "backward_step", not_under=("validation",))


def profiled_trainer_class(base, epochs: int, on_epoch):
    """``base`` (trainers/yolo_train.py's trainer class) with timed hooks; it stops after ``epochs`` epochs and
    hands each epoch's record to ``on_epoch``."""

    class ProfiledTrainer(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.profile = {"epoch_open": None, "one_off": defaultdict(float), "epochs_done": 0}

        # one-offs
        def select_subsets(self, listing, im_files):
            start = time.perf_counter()
            made, info = super().select_subsets(listing, im_files)
            self.profile["one_off"]["ids_selection_s"] += time.perf_counter() - start
            self.profile["one_off"]["ids_embed_s"] += info.get("embed_time_s") or 0.0
            return made, info

        def final_eval(self):
            start = time.perf_counter()
            try:
                return super().final_eval()
            finally:
                self.profile["one_off"]["final_eval_s"] += time.perf_counter() - start

        # per-epoch parts
        def preprocess_batch(self, batch):
            with PROF.part("forward_loss", under=(None,)):
                return super().preprocess_batch(batch)

        def optimizer_step(self):
            with PROF.part("backward_step"):
                return super().optimizer_step()

        def score(self, batch):
            with PROF.part("scoring"):
                return super().score(batch)

        def image_indices(self, batch):
            with PROF.part("selection"):
                return super().image_indices(batch)

        def validate(self):
            with PROF.part("validation"):
                return super().validate()

        def save_model(self):
            with PROF.part("checkpoint"):
                return super().save_model()

        def end_batch(self):
            with PROF.part("selection"):
                return super().end_batch()

        def end_training_epoch(self):
            with PROF.part("selection"):
                return super().end_training_epoch()

        def start_epoch_reduction(self):
            if self.profile["epoch_open"] is None and "setup_s" not in self.profile["one_off"]:
                self.profile["one_off"]["setup_s"] = time.perf_counter() - self.profile_started
            self.profile["epoch_open"] = (time.perf_counter(), PROF.snapshot())
            with PROF.part("selection"):
                return super().start_epoch_reduction()

        def end_epoch(self):
            with PROF.part("selection"):
                super().end_epoch()
            if self.profile["epoch_open"] is None:  # the final evaluation's rerun of the hook
                return
            start, before = self.profile["epoch_open"]
            wall = time.perf_counter() - start
            after = PROF.snapshot()
            parts = {p: after.get(p, 0.0) - before.get(p, 0.0) for p in PARTS}
            parts["rest"] = wall - sum(parts.values())
            selecting = self.online is not None and not self.selector.in_warmup(self.epoch)
            self.profile["epoch_open"] = None
            self.profile["epochs_done"] += 1
            on_epoch({"epoch": self.epoch, "selecting": bool(selecting), "wall_s": wall, "parts": parts})
            if self.profile["epochs_done"] >= epochs:
                self.stop = True  # Ultralytics breaks out of its loop after this callback

    return ProfiledTrainer


def load_yolo_train():
    spec = importlib.util.spec_from_file_location("yolo_train", REPO / detection.TRAINER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------ reporting
def conditions() -> dict:
    """What bench/run.py records for a run, and this process's nice value and threads."""
    import torch

    pids = trainer_pids()
    return {"threads": threads_of(dict(os.environ), classify=False), "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "nice": os.nice(0),
            "other_trainers": None if pids is None else len(pids),
            "load": [round(x, 2) for x in os.getloadavg()], "time": time.strftime("%F %T")}


def mean_parts(epochs: list) -> dict:
    n = max(len(epochs), 1)
    keys = [*PARTS, "rest"]
    out = {k: sum(e["parts"][k] for e in epochs) / n for k in keys}
    out["wall_s"] = sum(e["wall_s"] for e in epochs) / n
    return out


def columns(result: dict) -> list:
    """(label, epochs) columns of the table: every epoch, or for an online method its full-data (warm-up,
    anneal) and selecting epochs apart."""
    out = []
    for method, r in result["methods"].items():
        epochs = r["epochs"]
        selecting = [e for e in epochs if e["selecting"]]
        if r["online"]:
            others = [e for e in epochs if not e["selecting"]]
            if others:
                out.append((f"{method} (all images: epoch {', '.join(str(e['epoch']) for e in others)})", others))
            if selecting:
                out.append((f"{method} (selecting: epoch {', '.join(str(e['epoch']) for e in selecting)})",
                            selecting))
        elif epochs:
            out.append((f"{method} ({len(epochs)} epoch{'s' * (len(epochs) > 1)})", epochs))
    return out


def is_quiet(result: dict) -> bool:
    """Whether the seconds compare: only when no other benchmark trainer ran as any method started (the load
    average lags a pause of the others, so it does not decide)."""
    starts = [result["conditions_start"], *(m["conditions_start"] for m in result["methods"].values())]
    return all(c.get("other_trainers") == 0 for c in starts)


def quietness(result: dict) -> str:
    if is_quiet(result):
        return "quiet (no other benchmark trainer ran), so the seconds compare across methods"
    return "contended, shares mean more than seconds"


def loop_boost(result: dict, method: str, base: str = "full") -> float:
    """``base``'s training-loop seconds per epoch over ``method``'s (the trainer's own train_time_s, the clock
    the benchmark's wall-time boost reads), over the profiled epochs."""
    def per_epoch(name):
        epochs = result["methods"][name]["epochs"]
        return sum(e["trainer_record"]["train_time_s"] for e in epochs) / len(epochs)
    return per_epoch(base) / per_epoch(method)


def render_md(result: dict) -> str:
    cols = columns(result)
    means = [mean_parts(e) for _, e in cols]
    lines = ["# Where a detection epoch's time goes", "",
             f"Command: `{result['command']}`", "",
             f"Synthetic protocol ({result['protocol']['dataset']}, {result['protocol']['model']}, imgsz "
             f"{result['protocol']['imgsz']}, batch {result['protocol']['batch']}), schedule of "
             f"{result['schedule_epochs']} epochs stopped after {result['epochs']}. Seconds per epoch (share of the "
             "epoch's wall time); exclusive times, so the parts add up to the epoch. CPU, "
             f"{result['conditions_start']['torch_threads']} thread(s), nice {result['conditions_start']['nice']}, "
             f"{result['conditions_start']['other_trainers']} other trainer(s) running at the start, load "
             f"{result['conditions_start']['load']}: {quietness(result)}.", "",
             "| part | " + " | ".join(label for label, _ in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for key, text in [*PARTS.items(), ("rest", "rest (Ultralytics' loop)")]:
        cells = [f"{m[key]:.2f} ({100 * m[key] / m['wall_s']:.1f} %)" if m["wall_s"] else "—" for m in means]
        lines.append(f"| {text} | " + " | ".join(cells) + " |")
    lines.append("| **epoch wall time** | " + " | ".join(f"**{m['wall_s']:.2f}**" for m in means) + " |")
    lines += ["", "One-offs (seconds): " + "; ".join(
        f"{method}: " + ", ".join(f"{k[:-2].replace('_', ' ')} {v:.1f}" for k, v in sorted(r["one_off"].items()))
        for method, r in result["methods"].items()), "",
        "Per epoch (seconds): wall = " + " + ".join(k for k in [*PARTS, "rest"]), ""]
    for method, r in result["methods"].items():
        for e in r["epochs"]:
            rec = e.get("trainer_record") or {}
            lines.append(f"- {method} epoch {e['epoch']}{' (selecting)' if e['selecting'] else ''}: "
                         f"{e['wall_s']:.2f} = " + " + ".join(f"{e['parts'][k]:.2f}" for k in [*PARTS, "rest"])
                         + f"; back-propagated {rec.get('samples_backprop')} of {rec.get('samples_loaded', rec.get('forward_samples'))} loaded images, "
                         f"scored {rec.get('samples_scored')}")
    return "\n".join(lines) + "\n"


def write(out: Path, result: dict) -> None:
    write_text(out / "profile.json", json.dumps(result, indent=1) + "\n")
    write_text(out / "profile.md", render_md(result))


# ------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        methods = check(a)
        params = detection_data.params_from(a)
        data_dir = detection_data.build(params, a.cache_dir)
    except (UsageError, FileNotFoundError) as exc:
        print(f"profile_detection.py: error: {exc}", file=sys.stderr)
        return 2
    if not a.verbose:
        os.environ["YOLO_VERBOSE"] = "False"  # read when Ultralytics is imported (below)
    yolo_train = load_yolo_train()
    from ultralytics.utils import LOGGER
    if not a.verbose:
        LOGGER.setLevel("WARNING")
    install_timers()

    out = a.out.resolve()
    digest = hashlib.sha256(str(out).encode()).hexdigest()[:8]
    runs_dir = (a.runs_dir or cache_root() / "detection-runs" / f"profile-{digest}").expanduser().resolve()
    known = detection_methods(a.schedule_epochs)
    settings = SimpleNamespace(epochs=a.schedule_epochs, imgsz=params.canvas, batch=a.batch, workers=a.workers,
                               seed=a.seed, train_args=PROTOCOL["train_args"])
    result = {"command": shlex.join([sys.executable, *sys.argv]), "epochs": a.epochs,
              "schedule_epochs": a.schedule_epochs, "parts": {**PARTS, "rest": "the epoch's wall time less the parts"},
              "protocol": {"dataset": data_dir.name, "model": detection.MODEL, "imgsz": params.canvas,
                           "batch": a.batch, "workers": a.workers, "train_args": PROTOCOL["train_args"]},
              "machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "cpus": os.cpu_count()},
              "conditions_start": conditions(), "methods": {}}
    out.mkdir(parents=True, exist_ok=True)
    for n, method in enumerate(methods, 1):
        work = runs_dir / method / f"seed{a.seed}"
        shutil.rmtree(work, ignore_errors=True)  # always a fresh run (never resumed)
        cmd = detection.trainer_command(settings, method, known[method], data_dir, work)
        record = {"flags": known[method], "trainer_argv": cmd[1:], "online": False, "epochs": [], "one_off": {},
                  "conditions_start": conditions()}
        result["methods"][method] = record
        label = f"[{n}/{len(methods)}] {method}"

        def on_epoch(e, label=label, record=record):
            record["epochs"].append(e)
            parts = e["parts"]
            top = sorted(parts, key=parts.get, reverse=True)[:3]
            print(f"{label} epoch {e['epoch']}{' (selecting)' if e['selecting'] else ''}: {e['wall_s']:.1f} s; "
                  + ", ".join(f"{k} {100 * parts[k] / e['wall_s']:.0f} %" for k in top), flush=True)

        PROF.__init__()
        trainer_class = profiled_trainer_class(yolo_train.DataReduceDetectionTrainer, a.epochs, on_epoch)
        yolo_train.DataReduceDetectionTrainer = trainer_class
        try:
            args = yolo_train.parse_args(cmd[2:])
            trainer_class.profile_started = time.perf_counter()
            start = time.perf_counter()
            trainer = yolo_train.train(args)
        except yolo_train.USER_ERRORS as exc:
            print(f"profile_detection.py: error: {method}: {exc}", file=sys.stderr)
            return 2
        finally:
            yolo_train.DataReduceDetectionTrainer = trainer_class.__mro__[1]
        record["one_off"] = dict(trainer.profile["one_off"], total_s=time.perf_counter() - start)
        record["online"] = trainer.online is not None
        record["loader"] = {"num_workers": trainer.train_loader.num_workers, "mosaic": trainer.args.mosaic,
                            "train_images": len(trainer.train_loader.dataset)}
        log = [json.loads(line) for line in (trainer.save_dir / "log.jsonl").read_text().splitlines()]
        by_epoch = {r["epoch"]: r for r in log if r["type"] == "epoch"}
        for e in record["epochs"]:
            e["trainer_record"] = by_epoch.get(e["epoch"])
        record["conditions_end"] = conditions()
        write(out, result)
        print(f"{label}: {len(record['epochs'])} epoch(s) profiled in {record['one_off']['total_s']:.0f} s", flush=True)
    print(f"wrote {out / 'profile.json'} and {out / 'profile.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
