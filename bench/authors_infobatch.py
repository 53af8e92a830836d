#!/usr/bin/env python
"""The authors' InfoBatch driving our classification recipe: their code and ours side by side on the same run.

trainers/classify.py's loop with ``--reduce infobatch`` runs *our* InfoBatch (``datareduce/infobatch.py``). This
script trains the same thing — the same data, transforms, model, batch size, optimizer, LR schedule, weight decay,
epochs, per-epoch seeding and evaluation, all taken from trainers/classify.py and datareduce (imported, not copied)
— but lets the authors' released ``InfoBatch`` (NUS-HPC-AI-Lab/InfoBatch, ``infobatch/infobatch.py``) choose the
epochs: their dataset wrapper and sampler decide which samples each epoch visits, their ``update()`` takes the
per-sample losses of the training forward (their score), multiplies in their weights (the 1/keep rescaling of the
kept well-learned samples) and returns the batch loss that is back-propagated — their README's three lines, as in
their ``examples/cifar_example.py``. ``--full`` runs the same plain loop on the full data without InfoBatch (our
sampler, as classify.py's full run), the reference the authors' run is compared against.

Their file is not part of this project: extract it from a checkout and pass its path, e.g.

    git clone https://github.com/NUS-HPC-AI-Lab/InfoBatch && git -C InfoBatch checkout 8bbb012
    cp InfoBatch/infobatch/infobatch.py /tmp/authors-infobatch.py      # or: git show 8bbb012:infobatch/infobatch.py
    python bench/authors_infobatch.py --config configs/cifar10-resnet20-long.yaml --data-path DATA --epochs 30 \\
        --seed 0 --opt sgd_nesterov --lr-scheduler multisteplr --lr-milestones 15 23 --lr-gamma 0.2 \\
        --infobatch-src /tmp/authors-infobatch.py --output-dir OUT

(sha256 of that file at 8bbb012: ``AUTHORS_SHA256`` below; another version runs, and the log says it differs).

Flags are trainers/classify.py's (``--config`` too, the command line winning), plus ``--infobatch-src``,
``--full`` and ``--overwrite``; the authors' ``prune_ratio`` and ``delta`` are ours, ``--infobatch-ratio`` (0.5)
and ``--infobatch-delta`` (0.875). Flags this loop does not implement (resume, DDP, EMA, mixup/cutmix, any other
data reduction) are refused. ``<output-dir>/log.jsonl`` has classify.py's schema: a ``run`` record, one ``epoch``
record per epoch (``top1``, ``samples_backprop``, ``optimizer_steps``, ``train_time_s`` …; plus ``pruned_samples``,
``keep_fraction`` and the authors' weight mass ``weight_mass`` = Σ weights over the visited samples / N) and a
closing ``summary`` (``final_top1``, ``samples_backprop`` …), so bench/summarize.py-style comparison works. The log
is rewritten atomically after every epoch. Not resumable: a folder that holds a run is refused without
``--overwrite``.

Where it differs from classify.py's loop, unavoidably (the point is to run their code as released):

* the visiting order and the pruning draw are the authors': their sampler reseeds NumPy's global RNG with its
  epoch counter (``np.random.seed(iterations)``), so they do not depend on ``--seed`` (ours: seed·100003+epoch);
  ``--seed`` still sets the model's initialisation and every other RNG per epoch, as in classify.py;
* the batch loss is their ``update()``'s, (losses · weights).mean(), the same formula as ours; their weights stay
  on in the annealing epochs when δ·epochs is not an integer (their ``reset_weights`` condition; rule 2 of
  bench/baseline_check.md) — reproduced here, as it is their code; ``weight_mass`` shows it;
* their sampler replans the epoch whenever ``iter()`` is called on it and returns itself, which today's
  torch ``BatchSampler`` does before every batch (``itertools.islice``; torch 2.14 here): the epoch would never
  end. The batches are therefore made by ``LegacyBatchSampler``, torch's older BatchSampler loop (one ``iter()``
  an epoch), the one their code was written for; their sampler and wrapper are used unchanged;
* their module patches ``torch.utils.data`` (``_BaseDataLoaderIter.__next__``) when loaded, for every loader of
  the process: it is loaded only without ``--full``, and the evaluation loader is unaffected (not an InfoBatch);
* no reduction session: ``samples_scored`` is 0 (InfoBatch scores from the training forward), no
  ``selection_counts.npy``, no checkpoint, one process only.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "trainers")]  # bench.run and trainers/classify.py, of this checkout

import classify  # noqa: E402  (trainers/classify.py: data, model, optimizer, schedule, the same flags)
from bench.run import run_conditions  # noqa: E402
from datareduce import records  # noqa: E402
from datareduce._validate import UsageError  # noqa: E402
from datareduce.atomic import UnwritableError, check_writable_dir, write_text  # noqa: E402
from datareduce.flags import apply_config_file, config_from_args  # noqa: E402
from datareduce.integrations.classification.evaluation import evaluate  # noqa: E402
from datareduce.integrations.classification.launch import init_distributed, resolve_device  # noqa: E402
from datareduce.integrations.classification.loss import autocast, per_sample_loss  # noqa: E402
from datareduce.integrations.classification.seeding import seed_epoch  # noqa: E402
from datareduce.models import get_model  # noqa: E402
from datareduce.run_files import jsonable_args  # noqa: E402

PROG = "authors_infobatch.py"
AUTHORS_COMMIT = "8bbb012c256c9eb4de3bb209f8a5e73899de8d02"
AUTHORS_SHA256 = "bcb2a42551bbdfd56bc08bf155d1c0f464a04049d208577dcc43808f9b6e0499"  # infobatch/infobatch.py there
# classify.py flags this loop does not implement: refused unless left at their defaults.
UNSUPPORTED = ("resume", "test_only", "stop_after", "start_epoch", "model_ema", "mixup_alpha", "cutmix_alpha",
               "sync_bn")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, parents=[classify.get_args_parser(add_help=False)], formatter_class=classify._HelpWithDefaults,
        description="trainers/classify.py's recipe with the authors' InfoBatch (their dataset wrapper, sampler and "
                    "update()) driving the epochs, or with --full the same plain loop on the full data")
    parser.add_argument("--infobatch-src", default=None, metavar="PATH",
                        help="the authors' infobatch/infobatch.py (extracted from a NUS-HPC-AI-Lab/InfoBatch "
                             "checkout, e.g. git show 8bbb012:infobatch/infobatch.py > PATH); needed unless --full")
    parser.add_argument("--full", action="store_true",
                        help="no InfoBatch: the full data every epoch in our shuffled order, as classify.py's full run")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = get_args_parser()
    path, unknown = apply_config_file(parser, argv)
    if unknown:
        parser.error(f"--config {path}: unknown flag(s) {', '.join(map(repr, unknown))}")
    return parser.parse_args(argv)


def check_args(args) -> object:
    """Refuse what this loop does not do; returns the InfoBatch settings (ours: ratio, delta)."""
    defaults = get_args_parser()
    for key in UNSUPPORTED:
        if getattr(args, key) != defaults.get_default(key):
            raise UsageError(f"--{key.replace('_', '-')} is not supported here (trainers/classify.py has it)")
    try:
        cfg = config_from_args(args, seed=args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if cfg.method not in ("full", "infobatch") or cfg.adonis is not None or cfg.ids is not None:
        raise UsageError("this script runs only the authors' InfoBatch (default) or --full; drop the other "
                         "data-reduction flags (run those with trainers/classify.py)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("one process only (no torchrun)")
    if not args.full:
        if not args.infobatch_src:
            raise UsageError("--infobatch-src PATH is required (the authors' infobatch/infobatch.py, extracted from "
                             "a NUS-HPC-AI-Lab/InfoBatch checkout), or pass --full")
        if not Path(args.infobatch_src).is_file():
            raise UsageError(f"--infobatch-src {args.infobatch_src}: no such file (extract it from a checkout: "
                             f"git show {AUTHORS_COMMIT[:7]}:infobatch/infobatch.py > {args.infobatch_src})")
    return cfg.infobatch


def load_authors(path):
    """The authors' module from ``path`` (importing it patches torch's DataLoader iterator, as it does for them)."""
    spec = importlib.util.spec_from_file_location("authors_infobatch_src", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - a wrong file: say so in one line
        raise UsageError(f"--infobatch-src {path}: could not be loaded ({type(exc).__name__}: {exc})") from exc
    if not hasattr(module, "InfoBatch"):
        raise UsageError(f"--infobatch-src {path}: defines no InfoBatch (not the authors' infobatch/infobatch.py?)")
    return module


def check_output_dir(out: Path, overwrite: bool) -> None:
    log = out / records.LOG_NAME
    recs = records.read(log) if log.is_file() else []
    if any(r.get("type") == "epoch" for r in recs):
        state = "a finished run" if any(r.get("type") == "summary" for r in recs) else \
            "an unfinished run (this script cannot resume it)"
        if not overwrite:
            raise UsageError(f"--output-dir {out} already holds {state}; pass --overwrite to replace it")
    try:
        check_writable_dir(out, f"--output-dir {out}")
    except UnwritableError as exc:
        raise UsageError(str(exc)) from exc


class LegacyBatchSampler(torch.utils.data.Sampler):
    """torch's BatchSampler (drop_last False) as it was before it took its batches with ``itertools.islice``:
    one ``iter(sampler)`` an epoch. The authors' sampler replans the epoch at every ``iter()`` and returns itself,
    so today's BatchSampler (``islice(sampler_iter, n)`` calls ``iter()`` again for every batch) replans before
    every batch and the epoch never ends. This is the loop their sampler was written for; it changes nothing else."""

    def __init__(self, sampler, batch_size: int):
        self.sampler, self.batch_size = sampler, batch_size

    def __iter__(self):
        batch = []
        for idx in self.sampler:
            batch.append(idx)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def __len__(self) -> int:  # the epoch planned last (as their sampler's own len)
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size


class Log:
    """log.jsonl in classify.py's schema, rewritten whole (temp file + rename) at every record."""

    def __init__(self, out: Path):
        self.path, self.recs, self.cumulative = out / records.LOG_NAME, [], 0.0

    def write(self, kind: str, record: dict) -> dict:
        record = {"type": kind, **record}
        if kind == "epoch":
            self.cumulative += record["train_time_s"]
            record["cumulative_train_time_s"] = self.cumulative
        self.recs.append(record)
        write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.recs))
        return record


def main(argv=None) -> None:
    wall_start = time.perf_counter()
    args = parse_args(argv)
    ib_cfg = check_args(args)
    if args.output_dir is None:
        raise UsageError("--output-dir is required")
    out = Path(args.output_dir)
    check_output_dir(out, args.overwrite)
    authors = None if args.full else load_authors(args.infobatch_src)

    device = resolve_device(args.device)
    dist, device = init_distributed(device, args.dist_url)
    classify.configure_backends(args, device)

    splits, train_sampler, val_sampler = classify.load_data(args, dist)
    classify.resolve_defaults(args, splits)
    num_classes = splits.num_classes
    torch.manual_seed(args.seed)
    model = get_model(args.model, num_classes=num_classes, weights=args.weights)
    data_loader, data_loader_test = classify.make_loaders(splits, train_sampler, val_sampler, args, device)
    ib, method = None, "full"
    if authors is not None:
        method = "authors-infobatch"
        # their three lines: the wrapper, its sampler (taken once: every .sampler is a new one), update(loss)
        ib = authors.InfoBatch(splits.train, args.epochs, ib_cfg.ratio, ib_cfg.delta)
        data_loader = torch.utils.data.DataLoader(ib, batch_sampler=LegacyBatchSampler(ib.sampler, args.batch_size),
                                                  num_workers=args.workers, pin_memory=device.type == "cuda")
    model.to(device)
    optimizer = classify.build_optimizer(model, args)
    lr_scheduler = classify.build_lr_scheduler(optimizer, args)

    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "conditions.json", json.dumps(run_conditions(1, torch.get_num_threads())) + "\n")
    log = Log(out)
    src = {}
    if authors is not None:
        digest = hashlib.sha256(Path(args.infobatch_src).read_bytes()).hexdigest()
        src = {"infobatch_src": str(Path(args.infobatch_src).resolve()), "infobatch_src_sha256": digest,
               "infobatch_src_is_8bbb012": digest == AUTHORS_SHA256}
    saved = jsonable_args(classify.saved_args(args))
    log.write("run", {"args": saved, "method": method, "loop": "bench/authors_infobatch.py",
                      "reduce": {"method": method, "seed": args.seed,
                                 **({"infobatch": {"ratio": ib_cfg.ratio, "delta": ib_cfg.delta}} if ib else {})},
                      "num_train": len(splits.train), "num_val": len(splits.val), "num_classes": num_classes,
                      "dataset": splits.kind, "preset": splits.preset, "device": str(device), "world_size": 1, **src})
    what = (f"the authors' InfoBatch r={ib_cfg.ratio:g} δ={ib_cfg.delta:g} from {args.infobatch_src}" if ib else
            "full data, plain loop")
    print(f"{PROG}: {method} ({what}), {args.model}, {args.epochs} epochs, {device}", flush=True)

    for epoch in range(args.epochs):
        seed_epoch(args.seed, epoch, 0)
        train_sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        sync = device.type == "cuda"
        if sync:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        steps = backprop = 0
        loss_sum, mass = 0.0, 0.0
        non_blocking = device.type == "cuda"
        for batch in data_loader:  # the authors' sampler plans the epoch here (its __iter__ prunes)
            images, targets, indices = batch
            images = images.to(device, non_blocking=non_blocking)
            targets = targets.to(device, non_blocking=non_blocking)
            with autocast(device, args.amp):
                losses = per_sample_loss(model(images), targets, args.label_smoothing)
                if ib is not None:
                    mass += float(ib.weights[ib.cur_batch_index].sum())
                    loss = ib.update(losses)  # their score update, their weights multiplied in, the mean
                else:
                    loss = losses.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
            optimizer.step()
            steps += 1
            backprop += len(indices)
            loss_sum += float(loss.detach()) * len(indices)
        if sync:
            torch.cuda.synchronize(device)
        train_time = time.perf_counter() - t0
        lr_scheduler.step()
        t1 = time.perf_counter()
        metrics = evaluate(model, data_loader_test, device, num_classes, amp=args.amp)
        eval_time = time.perf_counter() - t1
        n = len(splits.train)
        record = log.write("epoch", {
            "epoch": epoch, "method": method, "lr": lr, "train_loss": loss_sum / backprop if backprop else None,
            "train_time_s": train_time, "eval_time_s": eval_time, "samples_backprop": backprop,
            "forward_samples": backprop, "samples_scored": 0, "samples_selected": backprop, "train_samples": backprop,
            "optimizer_steps": steps, "train_batches": steps, "pruned_samples": n - backprop,
            "keep_fraction": backprop / n, **({"weight_mass": mass / n} if ib is not None else {}), **metrics})
        print(f"Epoch {epoch}: " + "  ".join(classify._fmt(k, record.get(k)) for k in
              ("top1", "train_loss", "keep_fraction", "samples_backprop", "optimizer_steps", "train_time_s")
              if record.get(k) is not None), flush=True)

    epochs = [r for r in log.recs if r["type"] == "epoch"]
    summary = log.write("summary", {**records.summarize(epochs, "top1"), "method": method, "ids_time_s": 0,
                                    "final_top5": epochs[-1].get("top5") if epochs else None,
                                    "wall_time_s": time.perf_counter() - wall_start, "output_dir": str(out)})
    print(f"final top-1 {summary.get('final_top1')}  back-propagated {summary.get('samples_backprop')} samples in "
          f"{summary.get('optimizer_steps')} steps; log: {log.path}")


if __name__ == "__main__":
    try:
        main()
    except (UsageError, FileNotFoundError) as exc:
        if os.environ.get("DATAREDUCE_TRACEBACK"):
            raise
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        sys.exit(2)
