#!/usr/bin/env python
"""Image classification training, torchvision-reference style, that trains on less data.

The command line is that of torchvision's ``references/classification/train.py`` (``--data-path``, ``--model``,
``-b``, ``--epochs``, ``--opt``, ``--lr``, ``--lr-scheduler``, ``--resume``, ``--amp``, ``--test-only`` …), plus
``--lr-milestones`` (the paper's CIFAR protocol), ``--config FILE`` (flags in YAML; the command line wins), and
the paper's two methods and their baselines (Demidovskij et al., Mathematics 2023, 11, 3120):

    python trainers/classify.py --adonis-eta 3                     # ADONIS on the embedded digits, ~1 min on a CPU
    python trainers/classify.py --config configs/cifar10-resnet18.yaml --data-path ~/data/cifar10 --adonis-eta 3
    python trainers/classify.py --data-path ~/data/cifar10 --ids-alpha 0.8 --ids-gamma 120 --adonis-eta 3
    python trainers/classify.py --data-path ~/data/cifar10 --reduce sb          # or stale-sb, infobatch, rpd …
    torchrun --nproc_per_node 2 trainers/classify.py --data-path ~/data/cifar10 --adonis-eta 3

Every epoch appends one JSON line to ``<output-dir>/log.jsonl`` (training-loop wall time, samples scored and
back-propagated, optimizer steps, losses, accuracy, lr); the IDS preprocessing time is its own line; a summary
line closes the run. ``selection_counts.npy`` holds how often each training sample was back-propagated,
``manifest.json`` the offline subset: the run files every host writes (:mod:`datareduce.run_files`).
"""
import argparse
import datetime
import json
import math
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.utils.data
from tqdm import tqdm

try:
    import datareduce  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datareduce import records
from datareduce._validate import UsageError
from datareduce.atomic import UnwritableError, check_writable_dir
from datareduce.datasets import PRESETS, load_datasets, skipped_message
from datareduce.describe import method_name, reduce_line
from datareduce.distributed import barrier, broadcast_object
from datareduce.extras import MissingExtra
from datareduce.flags import (DROP_FLAGS, add_reduce_arguments, apply_config_file, changed_record, config_from_args,
                              read_config_file, resume_changes, resume_refusal, resumed_line, shown_value)
from datareduce.integrations.classification.checkpoint import load_checkpoint, save_checkpoint
from datareduce.integrations.classification.evaluation import evaluate
from datareduce.integrations.classification.launch import init_distributed, resolve_device
from datareduce.integrations.classification.offline_subset import (build_extractor_for, build_offline_manifest,
                                                                   check_manifest, manifest_ids)
from datareduce.host_support import check_supported
from datareduce.integrations.classification.reducer_choice import HOST, build_reducer
from datareduce.integrations.classification.samplers import ShardSampler, TrainSampler
from datareduce.integrations.classification.scoring import make_score_fn
from datareduce.integrations.classification.seeding import rng_state, seed_epoch
from datareduce.integrations.classification.training import train_one_epoch
from datareduce.integrations.classification.training_set import TrainingSet, full_size
from datareduce.models import get_model
from datareduce.run_files import COUNTS_NAME, MANIFEST_NAME
from datareduce.session import ReductionSession

EMBEDDED = {"model": "resnet20", "epochs": 10, "workers": 0}  # defaults for the embedded digits data
REFERENCE = {"model": "resnet18", "epochs": 90, "workers": 16}  # the torchvision reference's
CHECKPOINT = "checkpoint.pth"
# Flags of one invocation: a resumed run never takes them from its checkpoint, nor compares them.
INVOCATION_FLAGS = ("resume", "output_dir", "start_epoch", "stop_after", "test_only", "config", "overwrite",
                    "world_size", "dist_url")
# Flags a resumed run takes from its checkpoint but may change: where the data is and how the run executes,
# not what it computes. Every other flag must keep the value the run was started with, except η and the loss-history
# lengths (resumable_flags), which the resumed epochs use.
FREE_ON_RESUME = ("data_path", "device", "workers", "print_freq", "amp", "allow_nonfinite", "weights",
                  "use_deterministic_algorithms")


def load_data(args, dist):
    """Datasets (train samples also yield their dataset index), samplers and loaders — cf. the reference. The
    image files of an ImageFolder tree are checked first: an unreadable one stops the run here, naming it, or with
    --skip-bad-images is left out (with a warning)."""
    splits = load_datasets(
        args.data_path, preset=args.preset, train_crop_size=args.train_crop_size,
        val_resize_size=args.val_resize_size, val_crop_size=args.val_crop_size, interpolation=args.interpolation,
        auto_augment=args.auto_augment, random_erase=args.random_erase, ra_magnitude=args.ra_magnitude,
        augmix_severity=args.augmix_severity, check_images=True, skip_bad_images=args.skip_bad_images)
    if splits.skipped and dist.main:
        total = len(splits.train) + len(splits.val) + len(splits.skipped)
        print(f"classify.py: warning: {skipped_message(splits.skipped, total)}", file=sys.stderr)
    train_sampler = TrainSampler(splits.train, dist.rank, dist.world_size, seed=args.seed)
    val_sampler = ShardSampler(splits.val, dist.rank, dist.world_size)
    return splits, train_sampler, val_sampler


def make_loaders(splits, train_sampler, val_sampler, args, device):
    collate_fn = torch.utils.data.default_collate
    if args.mixup_alpha > 0 or args.cutmix_alpha > 0:
        collate_fn = mixup_cutmix_collate(args.mixup_alpha, args.cutmix_alpha, splits.num_classes)
    pin = device.type == "cuda"
    data_loader = torch.utils.data.DataLoader(
        splits.train, batch_size=args.batch_size, sampler=train_sampler, num_workers=args.workers,
        pin_memory=pin, collate_fn=collate_fn)
    data_loader_test = torch.utils.data.DataLoader(
        splits.val, batch_size=args.batch_size, sampler=val_sampler, num_workers=args.workers, pin_memory=pin)
    return data_loader, data_loader_test


def mixup_cutmix_collate(mixup_alpha, cutmix_alpha, num_classes):
    """MixUp / CutMix on (images, targets), the dataset indices passed through (as the reference's collate)."""
    from torchvision.transforms import v2

    choices = []
    if mixup_alpha > 0:
        choices.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
    if cutmix_alpha > 0:
        choices.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
    mix = choices[0] if len(choices) == 1 else v2.RandomChoice(choices)

    def collate(batch):
        images, targets, indices = torch.utils.data.default_collate(batch)
        images, targets = mix(images, targets)
        return images, targets, indices

    return collate


def build_optimizer(model, args):
    norm_classes = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm,
                    torch.nn.modules.instancenorm._InstanceNorm, torch.nn.LocalResponseNorm)
    custom = {}
    if args.bias_weight_decay is not None:
        custom["bias"] = args.bias_weight_decay
    if args.transformer_embedding_decay is not None:
        for key in ("class_token", "position_embedding", "relative_position_bias_table"):
            custom[key] = args.transformer_embedding_decay
    groups = {"other": [], "norm": [], **{k: [] for k in custom}}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            key = next((k for k in custom if name == k), None)
            if key is None and args.norm_weight_decay is not None and isinstance(module, norm_classes):
                key = "norm"
            groups[key or "other"].append(p)
    decay = {"other": args.weight_decay, "norm": args.norm_weight_decay, **custom}
    parameters = [{"params": ps, "weight_decay": decay[k]} for k, ps in groups.items() if ps]

    opt_name = args.opt.lower()
    if opt_name.startswith("sgd"):
        return torch.optim.SGD(parameters, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                               nesterov="nesterov" in opt_name)
    if opt_name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                                   eps=0.0316, alpha=0.9)
    if opt_name == "adamw":
        return torch.optim.AdamW(parameters, lr=args.lr, weight_decay=args.weight_decay)
    raise UsageError(f"invalid optimizer {args.opt!r}: only SGD, SGD_nesterov, RMSprop and AdamW are supported")


def build_lr_scheduler(optimizer, args):
    """Epoch-based schedules as in the reference (stepped once per epoch, whatever the number of optimizer
    steps the data reduction leaves), plus MultiStepLR for the paper's CIFAR protocol."""
    name = args.lr_scheduler.lower()
    if name == "steplr":
        main_sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.lr_step_size, gamma=args.lr_gamma)
    elif name == "multisteplr":
        if not args.lr_milestones:
            raise UsageError("--lr-scheduler multisteplr needs --lr-milestones (e.g. 60 120 160)")
        main_sched = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=args.lr_milestones,
                                                          gamma=args.lr_gamma)
    elif name == "cosineannealinglr":
        main_sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=args.epochs - args.lr_warmup_epochs, eta_min=args.lr_min)
    elif name == "exponentiallr":
        main_sched = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=args.lr_gamma)
    else:
        raise UsageError(f"invalid lr scheduler {args.lr_scheduler!r}: only StepLR, MultiStepLR, "
                         "CosineAnnealingLR and ExponentialLR are supported")
    if args.lr_warmup_epochs <= 0:
        return main_sched
    if args.lr_warmup_method == "linear":
        warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=args.lr_warmup_decay,
                                                   total_iters=args.lr_warmup_epochs)
    elif args.lr_warmup_method == "constant":
        warmup = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=args.lr_warmup_decay,
                                                     total_iters=args.lr_warmup_epochs)
    else:
        raise UsageError(f"invalid warmup method {args.lr_warmup_method!r}: only linear and constant")
    return torch.optim.lr_scheduler.SequentialLR(optimizer, schedulers=[warmup, main_sched],
                                                 milestones=[args.lr_warmup_epochs])


def resolve_defaults(args, splits):
    """Fill the defaults that depend on the data: the embedded digits get a small model and few epochs."""
    table = EMBEDDED if splits.kind == "digits" and args.data_path is None else REFERENCE
    if args.model is None:
        args.model = table["model"]
    if args.epochs is None:
        args.epochs = table["epochs"]
    if args.workers is None:
        args.workers = min(table["workers"], os.cpu_count() or 1)
    if args.lr_scheduler is None:
        args.lr_scheduler = "multisteplr" if args.lr_milestones else "steplr"


def default_output_dir(dist):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S") if dist.main else None
    return str(Path("runs") / "classify" / broadcast_object(stamp))


def saved_args(args) -> dict:
    """The flags as the checkpoint and the log keep them (without this process's private bookkeeping)."""
    return {k: v for k, v in vars(args).items() if not k.startswith("_")}


def shown_args(args) -> argparse.Namespace:
    """The flags as the console shows them at start-up: without the data-reduction flags, which the
    ``datareduce:`` line before them sums up (a switch such as ``adonis=False`` reads wrong when ``--adonis-eta 3``
    turned ADONIS on; the log's run record keeps every flag)."""
    reduce_flags = {a.dest for a in add_reduce_arguments(argparse.ArgumentParser(add_help=False))._actions}
    return argparse.Namespace(**{k: v for k, v in saved_args(args).items() if k not in reduce_flags})


def given_flags(argv=None, config=None) -> frozenset:
    """The flags the user set, on the command line or in ``--config`` (their dests), whatever their values."""
    probe = get_args_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    given = set(vars(probe.parse_args(argv)))
    if config:
        given |= set(read_config_file(config, probe)[0])
    return frozenset(given)


def _given(args) -> frozenset:
    """What :func:`parse_args` found the user set; for a namespace made otherwise, the flags off their default."""
    given = getattr(args, "_given", None)
    if given is None:
        parser = get_args_parser()
        given = frozenset(k for k, v in saved_args(args).items() if v != parser.get_default(k))
    return given


def _reduce_settings(ns) -> dict:
    """The data reduction ``ns`` asks for, as logged, less where the embedding cache lives."""
    desc = config_from_args(ns, seed=ns.seed).describe()
    if "embed" in desc:
        desc["embed"] = {k: v for k, v in desc["embed"].items() if k != "cache_dir"}
    return desc


def configure_backends(args, device) -> None:
    """cuDNN autotuning or deterministic algorithms (``--use-deterministic-algorithms``); ``--amp`` off, with a
    warning, where mixed precision does not run (it is CUDA only here)."""
    if args.use_deterministic_algorithms:
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)
    else:
        torch.backends.cudnn.benchmark = True
    if args.amp and device.type != "cuda":
        warnings.warn("--amp has no effect on the CPU (mixed precision is CUDA only here)", RuntimeWarning)
        args.amp = False


def resume_settings(args, checkpoint, check=True) -> dict:
    """Continue with the checkpoint's own settings: flags not given now are taken from it, so ``--resume FILE``
    alone continues the run as it was started. A given flag that changes what the run computes (its model,
    epochs, optimizer, schedule, data pipeline, seed, data reduction) is refused: the restored optimizer,
    scheduler, subset and selector state were made with the old value, or the log would mix two runs. Only η and
    the loss-history lengths (:func:`~datareduce.flags.resumable_flags`) of a method the run uses may change: the
    restored cached losses and history hold for any value. Returns those changes: flag → (the run's value, the
    new one)."""
    old = {k: v for k, v in (checkpoint.get("args") or {}).items() if hasattr(args, k) and not k.startswith("_")}
    given = _given(args)
    started = argparse.Namespace(**saved_args(args))  # the run as started (today's defaults for newer flags)
    for key, value in old.items():
        setattr(started, key, value)
        if key not in INVOCATION_FLAGS and key not in given:
            setattr(args, key, value)
    if not check:
        return {}
    parser = get_args_parser()
    reduce_flags = {a.dest for a in add_reduce_arguments(argparse.ArgumentParser(add_help=False))._actions}
    # the data reduction: the core's decision, as on every host (the given flags name the changes)
    honoured, parts = resume_changes(_reduce_settings(started), _reduce_settings(args), given=given & reduce_flags)
    changed = []
    for action in parser._actions:
        key = action.dest
        if key not in given or key in INVOCATION_FLAGS or key in FREE_ON_RESUME or key in reduce_flags:
            continue
        if getattr(args, key) != getattr(started, key):
            changed.append(f"{max(action.option_strings, key=len)} {_shown(started, key)} → {_shown(args, key)}")
    if changed or parts:
        raise UsageError(resume_refusal(f"--resume {args.resume}", changed + parts, DROP_FLAGS,
                                        "another --output-dir"))
    return honoured


def _shown(ns, key) -> str:
    """A (non-data-reduction) flag's value for a message."""
    return shown_value(getattr(ns, key))


def holds_run(out_dir) -> bool:
    """Whether ``out_dir`` holds a run: a checkpoint, or a log with a finished epoch. (A log without one and no
    checkpoint is a start that never trained, e.g. interrupted in its first epoch: starting over loses nothing.)"""
    out = Path(out_dir)
    if (out / CHECKPOINT).exists():
        return True
    log = out / records.LOG_NAME
    return log.is_file() and any(r.get("type") == "epoch" for r in records.read(log))


def check_output_dir(args, dist) -> bool:
    """Refuse to start a run in a folder that holds one, unless ``--overwrite`` (then returns True: the old run's
    files are to be replaced), or in one that cannot be written (or made). Resuming continues the run in the
    checkpoint's own folder."""
    problem, replace = None, False
    out = Path(args.output_dir)
    in_place = args.resume and Path(args.resume).resolve().parent == out.resolve()
    if dist.main and not in_place and holds_run(out):
        replace = bool(args.overwrite)
        if not replace:
            ckpt = out / CHECKPOINT
            hint = (f"pass --resume {ckpt} to continue it, or --overwrite to replace it" if ckpt.exists() else
                    "pass --overwrite to replace it (it has no checkpoint to continue from)")
            problem = f"--output-dir {out} already holds a run; {hint}"
    if dist.main and problem is None:  # tried for real (a file in the way, a read-only mount, /proc …)
        try:
            check_writable_dir(out, f"--output-dir {out}")
        except UnwritableError as exc:
            problem = str(exc)
    problem, replace = broadcast_object((problem, replace))  # rank 0 looked: the same answer everywhere
    if problem:
        raise UsageError(problem)
    return replace


def _finite(loss) -> bool:
    return loss is None or math.isfinite(loss)


def diverged_message(epoch, loss, lr, saved) -> str:
    """What a run whose epoch ``epoch`` trained to a non-finite loss says when it stops."""
    where = (f"the last good checkpoint (epoch {saved[1]}) is kept: {saved[0]}" if saved else
             "no checkpoint was written")
    return (f"epoch {epoch}: the training loss is not finite ({loss}); training diverged, the learning rate "
            f"({lr:g}) is probably too high: try a lower --lr (or --allow-nonfinite to train on regardless); "
            f"{where}")


def resume_command(checkpoint) -> str:
    """This process's command line, continuing from ``checkpoint``."""
    argv, rest = [], iter(sys.argv[1:])
    for arg in rest:
        if arg == "--resume":
            next(rest, None)
        elif not arg.startswith("--resume=") and arg != "--overwrite":
            argv.append(arg)
    world, local = os.environ.get("WORLD_SIZE", "1"), os.environ.get("LOCAL_WORLD_SIZE")
    launcher = [sys.executable] if world == "1" else ["torchrun", f"--nproc_per_node={local or world}"]
    return shlex.join([*launcher, sys.argv[0], *argv, "--resume", str(checkpoint)])


def interrupted(args) -> int:
    """Ctrl-C: one line saying where the last checkpoint is and how to continue; exit code 130, as a shell's."""
    if os.environ.get("RANK", "0") == "0":
        saved = getattr(args, "_checkpoint", None)
        if saved is None:
            text = "interrupted before the first checkpoint was written: nothing to resume"
        else:
            text = (f"interrupted; the last checkpoint (epoch {saved[1]}) is {saved[0]}; continue with: "
                    f"{resume_command(saved[0])}")
        print(f"\nclassify.py: {text}", file=sys.stderr)
    return 130


def main(args):
    wall_start = time.perf_counter()
    checkpoint = load_checkpoint(args.resume) if args.resume else None
    honoured = {}
    if checkpoint is not None:
        honoured = resume_settings(args, checkpoint, check=not args.test_only)
        args._checkpoint = (str(args.resume), checkpoint["epoch"])
    device = resolve_device(args.device)
    dist, device = init_distributed(device, args.dist_url)
    say = print if dist.main else (lambda *a, **k: None)
    configure_backends(args, device)

    # Everything that can be wrong with the input is checked before anything is written.
    if args.output_dir is None:
        args.output_dir = str(Path(args.resume).parent) if args.resume else default_output_dir(dist)
    replace = False if args.test_only else check_output_dir(args, dist)
    try:
        reduce_cfg = config_from_args(args, seed=args.seed)
    except ValueError as exc:  # building the config only checks the flags: whatever it refuses, the user gave
        raise UsageError(str(exc)) from exc
    check_supported(reduce_cfg, HOST)
    if not args.test_only:
        say(reduce_line(reduce_cfg, rho=args.batch_size))  # what runs, with its effective settings
    if honoured:
        say(resumed_line(honoured))
    say("Loading data")
    splits, train_sampler, val_sampler = load_data(args, dist)
    resolve_defaults(args, splits)
    say(shown_args(args))
    num_classes = splits.num_classes
    torch.manual_seed(args.seed)
    model = get_model(args.model, num_classes=num_classes, weights=args.weights)

    if args.test_only:
        if checkpoint is not None:
            model.load_state_dict(checkpoint["model"])
        model.to(device)
        _, data_loader_test = make_loaders(splits, train_sampler, val_sampler, args, device)
        say(json.dumps(evaluate(model, data_loader_test, device, num_classes, amp=args.amp)))
        return

    # Offline subset (IDS, SSP, RPC, RPD): a manifest, made now, reused from --ids-manifest or the checkpoint.
    manifest, ids_info = None, None
    if checkpoint is not None and checkpoint.get("manifest") is not None:
        manifest = checkpoint["manifest"]
    elif reduce_cfg.ids is not None and reduce_cfg.ids.manifest:
        t0 = time.perf_counter()
        manifest = check_manifest(reduce_cfg.ids.manifest, splits.train)
        ids_info = {"source": reduce_cfg.ids.manifest, "time_s": time.perf_counter() - t0}
    elif reduce_cfg.ids is not None or reduce_cfg.method in ("ssp", "rpc", "rpd"):
        t0 = time.perf_counter()
        extractor = None
        if reduce_cfg.ids is not None or reduce_cfg.method == "ssp":
            extractor = build_extractor_for(reduce_cfg, device)
            say(f"Embedding {full_size(splits.train)} training images with {extractor.name}")
        bar = tqdm(desc="Embedding", unit="img", disable=not dist.main or extractor is None, leave=False)

        def progress(done, total):  # this rank's share of the images
            bar.total = total
            bar.update(done - bar.n)

        manifest, ids_info = build_offline_manifest(splits.train, reduce_cfg, extractor,
                                                    progress=progress, workers=args.workers)
        bar.close()
        ids_info["time_s"] = time.perf_counter() - t0

    # From here on we write.
    out_dir = Path(args.output_dir)
    session = ReductionSession(reduce_cfg, out_dir, TrainingSet(splits.train, train_sampler), args.epochs,
                               main=dist.main, manifest=manifest,
                               keys=manifest_ids(splits.train) if manifest is not None else None)
    files = session.files
    if dist.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if checkpoint is None or replace:  # a fresh start: no file of an earlier run (or start) stays behind
            for name in [CHECKPOINT] + ([records.LOG_NAME, COUNTS_NAME, MANIFEST_NAME] if replace else []):
                (out_dir / name).unlink(missing_ok=True)
    files.open(saved_args(args), resume_epoch=checkpoint["epoch"] + 1 if checkpoint else None, dataset=splits.kind,
               preset=splits.preset, num_val=len(splits.val), num_classes=num_classes, device=str(device),
               **({"skipped_images": [p for p, _ in splits.skipped]} if splits.skipped else {}))
    if honoured:  # what the resumed epochs run with, next to the run record's settings
        files.write("resume", {"epoch": checkpoint["epoch"] + 1,
                               "changed": changed_record(honoured)})
    if ids_info is not None:
        files.offline_subset(manifest, **ids_info)
        subs = manifest["subsets"]
        say(f"Offline subset ({manifest['method']}): kept {[s['num_kept'] for s in subs]} of "
            f"{manifest['dataset']['num_samples']} in {ids_info['time_s']:.1f}s")
    elif manifest is not None:  # resumed: the subset of the checkpoint
        files.write_manifest(manifest)

    say("Creating data loaders")
    data_loader, data_loader_test = make_loaders(splits, train_sampler, val_sampler, args, device)

    say("Creating model")
    model.to(device)
    if dist.enabled and args.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(model, args)
    scaler = torch.amp.GradScaler("cuda") if args.amp else None
    lr_scheduler = build_lr_scheduler(optimizer, args)

    model_without_ddp = model
    if dist.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
        model_without_ddp = model.module

    model_ema = None
    if args.model_ema:
        adjust = dist.world_size * args.batch_size * args.model_ema_steps / args.epochs
        alpha = min(1.0, (1.0 - args.model_ema_decay) * adjust)
        model_ema = torch.optim.swa_utils.AveragedModel(
            model_without_ddp, device=device,
            multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(1.0 - alpha), use_buffers=True)

    score_fn = make_score_fn(model_without_ddp, args.label_smoothing, bn=args.score_bn, amp=args.amp)
    session.attach(build_reducer(reduce_cfg, score_fn, args.batch_size, args.epochs, splits.train, dist.rank,
                                 collate_fn=data_loader.collate_fn, device=device))

    if checkpoint is not None:
        model_without_ddp.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
        args.start_epoch = checkpoint["epoch"] + 1
        if model_ema is not None and "model_ema" in checkpoint:
            model_ema.load_state_dict(checkpoint["model_ema"])
        if scaler is not None and "scaler" in checkpoint:
            scaler.load_state_dict(checkpoint["scaler"])
        session.load_state_dict(checkpoint, device=device)

    say(f"Start training ({method_name(reduce_cfg)}, {dist.world_size} process(es), {device})")
    epochs_run = 0
    for epoch in range(args.start_epoch, args.epochs):
        seed_epoch(args.seed, epoch, dist.rank)
        train_sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        train_loss = train_one_epoch(model, optimizer, data_loader, device, epoch, args, session, scaler, model_ema,
                                     show_progress=dist.main)
        lr_scheduler.step()
        t0 = time.perf_counter()
        metrics = evaluate(model_without_ddp, data_loader_test, device, num_classes, amp=args.amp)
        if model_ema is not None:
            ema = evaluate(model_ema, data_loader_test, device, num_classes, amp=args.amp)
            metrics.update({f"ema_{k}": v for k, v in ema.items()})
        eval_time = time.perf_counter() - t0

        diverged = not args.allow_nonfinite and not _finite(train_loss)
        record = session.write_epoch(epoch, {"lr": lr, "train_loss": train_loss, "eval_time_s": eval_time, **metrics})
        state = session.state_dict()
        if dist.main:
            print(f"Epoch {epoch}: " + "  ".join(_fmt(k, record.get(k)) for k in
                  ("top1", "top5", "train_loss", "keep_fraction", "samples_backprop", "optimizer_steps",
                   "train_time_s") if record.get(k) is not None))
        if diverged:  # keep the last good checkpoint: this epoch's model is not worth continuing from
            barrier()
            raise UsageError(diverged_message(epoch, record["train_loss"], lr, getattr(args, "_checkpoint", None)))
        if dist.main:
            checkpoint_state = {
                "model": model_without_ddp.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": lr_scheduler.state_dict(), "epoch": epoch, "args": saved_args(args), **state,
                "rng": rng_state()}
            if model_ema is not None:
                checkpoint_state["model_ema"] = model_ema.state_dict()
            if scaler is not None:
                checkpoint_state["scaler"] = scaler.state_dict()
            save_checkpoint(checkpoint_state, out_dir / CHECKPOINT)
        args._checkpoint = (str(out_dir / CHECKPOINT), epoch)  # what a Ctrl-C or divergence points to
        barrier()
        epochs_run += 1
        if args.stop_after and epochs_run >= args.stop_after and epoch < args.epochs - 1:
            say(f"Stopping after {epochs_run} epoch(s) as asked (--stop-after); continue with "
                f"--resume {out_dir / CHECKPOINT}")
            break
    else:
        if dist.main:
            write_summary(files, out_dir, wall_start)
    if dist.enabled:
        torch.distributed.destroy_process_group()


def write_summary(files, out_dir, wall_start):
    """The run's closing line in the log (totals over the epoch lines, IDS time apart) and on the console."""
    epochs = files.records("epoch")
    summary = files.write_summary("top1", final_top5=epochs[-1].get("top5") if epochs else None,
                                  wall_time_s=time.perf_counter() - wall_start, output_dir=str(out_dir))
    total = str(datetime.timedelta(seconds=int(summary.get("train_time_s", 0))))
    top1 = summary.get("final_top1")
    print(f"Training time {total}  final top-1 {top1 if top1 is None else f'{top1:.2f}'}  "
          f"back-propagated {summary.get('samples_backprop')} samples in {summary.get('optimizer_steps')} steps; "
          f"log: {out_dir / records.LOG_NAME}")


def _fmt(key, value):
    return f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"


class _HelpWithDefaults(argparse.HelpFormatter):
    """Append "(default: …)" to a flag's help unless it already says, or the default is empty."""

    def _get_help_string(self, action):
        text = action.help or ""
        empty = action.default is None or action.default is False or action.default in ("", argparse.SUPPRESS)
        if "default" in text or empty or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(
        description="PyTorch Classification Training with data reduction (ADONIS, IDS and baselines)",
        add_help=add_help, formatter_class=_HelpWithDefaults,
        epilog="With no --data-path the embedded digits set is used (scikit-learn's 1,797 handwritten digits, "
               "upscaled to 32x32 RGB, 1,437 train / 360 val, no download); it also changes the defaults of "
               "--model to resnet20, --epochs to 10 and --workers to 0, so `classify.py --adonis-eta 3` finishes "
               "in about a minute on a CPU. With --data-path the reference's defaults apply (resnet18, 90 epochs).")
    parser.add_argument("--config", default=None, type=str,
                        help="YAML file of flags (keys as on the command line, e.g. lr-milestones: [60, 120, 160]); "
                             "command-line flags win")
    parser.add_argument("--data-path", default=None, type=str,
                        help="dataset root: an ImageFolder tree (train/ and val/ or test/) or CIFAR-10/100 in "
                             "torchvision's format (cifar-10-batches-py/); default: the embedded digits")
    parser.add_argument("--preset", default="auto", choices=PRESETS,
                        help="normalisation and augmentation (auto: by dataset format and image size)")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="leave unreadable image files (empty, cut short, not an image) out of the ImageFolder "
                             "tree, with a warning naming them; without it the run refuses to start, naming them "
                             "(every file's header is checked before training either way)")
    parser.add_argument("--model", default=None, type=str,
                        help="model name: any torchvision classification model, resnet18_cifar, resnet50_cifar, "
                             "mobilenet_v2_cifar or resnet20 (default: resnet18; resnet20 on the embedded digits)")
    parser.add_argument("--device", default=None, type=str, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("-b", "--batch-size", default=32, type=int,
                        help="images per process; the total batch size is world_size x batch_size")
    parser.add_argument("--epochs", default=None, type=int, metavar="N",
                        help="number of total epochs to run (default: 90; 10 on the embedded digits)")
    parser.add_argument("-j", "--workers", default=None, type=int, metavar="N",
                        help="data loading workers (default: 16 capped at the CPU count; 0 on the embedded digits)")
    parser.add_argument("--opt", default="sgd", type=str, help="optimizer: sgd, sgd_nesterov, rmsprop, adamw")
    parser.add_argument("--lr", default=0.1, type=float, help="initial learning rate")
    parser.add_argument("--momentum", default=0.9, type=float, metavar="M", help="momentum")
    parser.add_argument("--wd", "--weight-decay", default=1e-4, type=float, metavar="W", help="weight decay",
                        dest="weight_decay")
    parser.add_argument("--norm-weight-decay", default=None, type=float,
                        help="weight decay for normalization layers (default: same as --wd)")
    parser.add_argument("--bias-weight-decay", default=None, type=float,
                        help="weight decay for bias parameters (default: same as --wd)")
    parser.add_argument("--transformer-embedding-decay", default=None, type=float,
                        help="weight decay for transformer embedding parameters (default: same as --wd)")
    parser.add_argument("--label-smoothing", default=0.0, type=float, help="label smoothing",
                        dest="label_smoothing")
    parser.add_argument("--mixup-alpha", default=0.0, type=float, help="mixup alpha")
    parser.add_argument("--cutmix-alpha", default=0.0, type=float, help="cutmix alpha")
    parser.add_argument("--lr-scheduler", default=None, type=str,
                        help="steplr, multisteplr, cosineannealinglr or exponentiallr "
                             "(default: steplr; multisteplr when --lr-milestones is given)")
    parser.add_argument("--lr-warmup-epochs", default=0, type=int, help="the number of epochs to warmup")
    parser.add_argument("--lr-warmup-method", default="constant", type=str, help="the warmup method")
    parser.add_argument("--lr-warmup-decay", default=0.01, type=float, help="the decay for lr")
    parser.add_argument("--lr-step-size", default=30, type=int, help="decrease lr every step-size epochs")
    parser.add_argument("--lr-milestones", default=None, type=int, nargs="+", metavar="EPOCH",
                        help="epochs at which multisteplr multiplies the lr by --lr-gamma (paper CIFAR: 60 120 160)")
    parser.add_argument("--lr-gamma", default=0.1, type=float, help="decrease lr by a factor of lr-gamma")
    parser.add_argument("--lr-min", default=0.0, type=float, help="minimum lr of the cosine schedule")
    parser.add_argument("--print-freq", default=10, type=int, help="progress bar update frequency (batches)")
    parser.add_argument("--output-dir", default=None, type=str,
                        help="where log.jsonl, checkpoint.pth, manifest.json and selection_counts.npy go "
                             "(default: runs/classify/<timestamp>; with --resume: the checkpoint's folder)")
    parser.add_argument("--resume", default="", type=str,
                        help="path of checkpoint: continues with the same settings, selector, subset schedule and "
                             "RNG (flags not given are the checkpoint's; changing what the run computes is refused)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in an --output-dir that holds one, replacing it (refused without)")
    parser.add_argument("--start-epoch", default=0, type=int, metavar="N", help="start epoch")
    parser.add_argument("--stop-after", default=0, type=int, metavar="N",
                        help="stop after N epochs of this invocation, as if interrupted (continue with --resume)")
    parser.add_argument("--sync-bn", dest="sync_bn", help="use sync batch norm", action="store_true")
    parser.add_argument("--test-only", dest="test_only", help="only test the model", action="store_true")
    parser.add_argument("--auto-augment", default=None, type=str,
                        help="auto augment policy: ra, ta_wide, augmix, imagenet, cifar10, svhn")
    parser.add_argument("--ra-magnitude", default=9, type=int, help="magnitude of auto augment policy")
    parser.add_argument("--augmix-severity", default=3, type=int, help="severity of augmix policy")
    parser.add_argument("--random-erase", default=0.0, type=float, help="random erasing probability")
    parser.add_argument("--amp", action="store_true", help="mixed precision training (CUDA; a no-op on the CPU)")
    parser.add_argument("--world-size", default=1, type=int,
                        help="number of distributed processes (set by torchrun; kept for compatibility)")
    parser.add_argument("--dist-url", default="env://", type=str, help="url used to set up distributed training")
    parser.add_argument("--model-ema", action="store_true",
                        help="enable tracking Exponential Moving Average of model parameters")
    parser.add_argument("--model-ema-steps", type=int, default=32,
                        help="the number of optimizer steps between EMA updates")
    parser.add_argument("--model-ema-decay", type=float, default=0.99998,
                        help="decay factor for Exponential Moving Average of model parameters")
    parser.add_argument("--use-deterministic-algorithms", action="store_true",
                        help="forces the use of deterministic algorithms only")
    parser.add_argument("--interpolation", default="bilinear", type=str, help="the interpolation method")
    parser.add_argument("--val-resize-size", default=256, type=int, help="validation resize size (imagenet preset)")
    parser.add_argument("--val-crop-size", default=224, type=int, help="validation central crop (imagenet preset)")
    parser.add_argument("--train-crop-size", default=224, type=int, help="training random crop (imagenet preset)")
    parser.add_argument("--clip-grad-norm", default=None, type=float, help="the maximum gradient norm")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="train on when an epoch's training loss is not finite (nan/inf); without it the run "
                             "stops with an error, keeping the last good checkpoint")
    parser.add_argument("--weights", default=None, type=str,
                        help="initial weights: a local file, or a torchvision weights name already in the torch "
                             "hub cache (nothing is downloaded)")
    parser.add_argument("--seed", default=0, type=int, help="seed for model init, data order and selection")
    parser.add_argument("--score-bn", default="batch", choices=("batch", "running"),
                        help="BatchNorm in the ADONIS/SB scoring forward: the batch's own statistics (as the "
                             "training step sees them) or the running ones (eval mode); neither changes the model")
    add_reduce_arguments(parser)
    return parser


def parse_args(argv=None):
    """The command line, over the values of ``--config FILE`` (a YAML of flag names; unknown keys are errors)."""
    parser = get_args_parser()
    path, unknown = apply_config_file(parser, argv)
    if unknown:
        parser.error(f"--config {path}: unknown flag(s) {', '.join(map(repr, unknown))}")
    args = parser.parse_args(argv)
    args._given = given_flags(argv, path)  # what --resume may not silently override
    return args


if __name__ == "__main__":
    args = parse_args()
    try:
        main(args)
    except KeyboardInterrupt:
        sys.exit(interrupted(args))
    except (UsageError, FileNotFoundError, MissingExtra) as exc:  # bad input; anything else keeps its traceback
        if os.environ.get("DATAREDUCE_TRACEBACK"):
            raise
        print(f"classify.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
