#!/usr/bin/env python
"""Ultralytics YOLO detection training that trains on less data (Demidovskij et al., Mathematics 2023, 11, 3120).

Our flags (``--ids-*``, ``--adonis-*``, ``--reduce …``) are options; every ``key=value`` is an Ultralytics
training argument, passed through unchanged:

    python trainers/yolo_train.py --ids-alpha 0.8                          # embedded digits set, minutes on a CPU
    python trainers/yolo_train.py --ids-alpha 0.8 data=coco.yaml model=yolov5s.yaml epochs=100 imgsz=640
    python trainers/yolo_train.py --adonis-eta 3 data=/data/coco128 project=/abs/runs
    python trainers/yolo_train.py --config configs/yolov5m-coco.yaml data=/data/coco/coco.yaml device=0,1
    python trainers/yolo_train.py --coco-json instances_train.json --coco-images images/train --ids-alpha 0.8

``data=`` is a local data YAML (or a folder holding ``data.yaml``); datasets are never downloaded. Without it, a
small detection set of real handwritten digits is generated into the cache dir. Nothing touches the network.
The run folder (Ultralytics' ``save_dir``) is laid out like ``trainers/classify.py``'s output dir, so
``datareduce report`` reads both: ``log.jsonl`` starts with a ``run`` record (Ultralytics' arguments, the data
reduction, dataset sizes, world size, device); every epoch appends one JSON line (training-loop wall time, images
scored and back-propagated, optimizer steps, mAP50, mAP50-95); IDS preprocessing time is its own line; a summary
closes it. ``manifest.json`` holds the IDS / RPD / SSP subset, ``selection_counts.npy`` how often each training image
was back-propagated (uint16, summed over DDP ranks, kept across ``resume=``). Ultralytics' ``args.yaml``,
``results.csv`` and ``weights/`` sit next to them (``weights/selection.pt``: every rank's selector state and the
counts a resumed run continues from).
"""
import argparse
import os
import sys
from pathlib import Path

try:
    import datareduce  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datareduce._validate import UsageError
from datareduce.describe import reduce_line
from datareduce.extras import MissingExtra
from datareduce.flags import add_reduce_arguments, apply_config_file
from datareduce.paths import cache_root

try:  # the [yolo] extra: Ultralytics (AGPL-3.0), checked to be a tested release before it is imported
    from datareduce.integrations.ultralytics_env import check_ultralytics, ensure_offline

    check_ultralytics()
    ensure_offline()  # Ultralytics looks for the network when it is imported: its offline switches go first
    from datareduce.integrations.ultralytics import DataReduceDetectionTrainer, TrainerSettings
    from datareduce.integrations import ultralytics_data as yd
    from ultralytics.cfg import get_cfg, parse_key_value_pair
except MissingExtra as exc:
    if __name__ != "__main__":
        raise
    print(f"yolo_train.py: error: {exc}", file=sys.stderr)
    sys.exit(2)

# What bad input raises (UsageError: our checks, and Ultralytics' own of its arguments, see check_overrides; a file
# the user named that is not there; a missing extra): one line and exit 2. Anything else is a bug: its traceback.
USER_ERRORS = (UsageError, FileNotFoundError, MissingExtra)

EMBEDDED = {"model": "yolov5n.yaml", "imgsz": 160, "epochs": 10}  # defaults for the embedded digits set
DEFAULTS = {"model": "yolov5n.yaml", "project": "runs/detect"}  # from scratch: no weights to download


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(description=__doc__, add_help=add_help,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="Ultralytics training arguments")
    parser.add_argument("--config", default=None,
                        help="YAML of Ultralytics arguments and our flags (e.g. ids-gamma: 60); the command line wins")
    parser.add_argument("--coco-json", default=None, help="train from COCO detection JSON (converted once)")
    parser.add_argument("--coco-images", default=None, help="folder of the --coco-json images")
    parser.add_argument("--coco-val-json", default=None, help="validation JSON (default: validate on train)")
    parser.add_argument("--coco-val-images", default=None, help="folder of the --coco-val-json images")
    parser.add_argument("--lr-gamma", type=float, default=None,
                        help="multiply the learning rate by this every epoch (the paper's YOLOv5 protocol: 0.98) "
                             "instead of Ultralytics' linear decay to lrf")
    parser.add_argument("--cache-dir", default=str(cache_root()),
                        help="where generated and converted datasets go (default: $DATAREDUCE_CACHE or "
                             "~/.cache/datareduce)")
    add_reduce_arguments(parser)
    return parser


def parse_args(argv=None):
    """Our flags as a namespace, with ``args.overrides`` the dict of Ultralytics arguments (config < command line)."""
    parser = get_args_parser()
    _, overrides = apply_config_file(parser, argv)  # config keys that are not our flags go to Ultralytics
    args = parser.parse_intermixed_args(argv)
    for pair in args.overrides:
        key, _, value = pair.partition("=")
        if not key.strip() or not value.strip():
            parser.error(f"{pair!r}: Ultralytics arguments are key=value (our own options start with --)")
        key, value = parse_key_value_pair(pair)
        overrides[key] = value
    args.overrides = overrides
    return args


def prepare_data(args, overrides):
    """The data YAML to train on: converted COCO JSON, a safe copy of ``data=``, or the embedded digits set."""
    cache = Path(args.cache_dir).expanduser()
    if args.coco_json:
        if not args.coco_images:
            raise UsageError("--coco-json needs --coco-images (the folder holding its images)")
        return yd.coco_to_yolo(args.coco_json, args.coco_images, cache / "coco",
                               args.coco_val_json, args.coco_val_images)
    if "data" in overrides:
        return yd.resolve_data_yaml(overrides["data"], cache / "data-yaml")
    for key, value in EMBEDDED.items():
        overrides.setdefault(key, value)
    return yd.make_digits_detection(cache / "datasets")


def check_overrides(overrides) -> None:
    """Ultralytics' own checks of its arguments (known keys, value types and ranges), before any work."""
    try:
        get_cfg(overrides=overrides)
    except (SyntaxError, TypeError, ValueError) as exc:  # raised here, they are about the arguments given
        raise UsageError("; ".join(line.strip() for line in str(exc).splitlines() if line.strip())) from exc


def check_run_folder(overrides) -> None:
    """Refuse ``exist_ok=True`` into a folder that holds a run of ours (its ``log.jsonl``): Ultralytics would train
    into it as it is and replace that run. ``resume=`` continues it; without ``exist_ok`` Ultralytics picks a new
    folder (name2, name3 …) itself."""
    if overrides.get("resume") or not overrides.get("exist_ok"):
        return
    from types import SimpleNamespace

    from ultralytics.cfg import get_save_dir

    project = Path(str(overrides.get("project", DEFAULTS["project"]))).expanduser().resolve()
    save_dir = get_save_dir(SimpleNamespace(project=str(project), name=overrides.get("name"), task="detect",
                                            mode="train", exist_ok=True, save_dir=overrides.get("save_dir")))
    if (save_dir / "log.jsonl").exists():
        last = save_dir / "weights" / "last.pt"
        how = f"pass resume={last} to continue it, or another name= for a new run" if last.exists() else \
            "choose another name= for a new run"
        raise UsageError(f"{save_dir} already holds a run (log.jsonl) that exist_ok=True would train over; {how}")


def check_weights(overrides) -> None:
    """A ``model=`` (or ``pretrained=``) ending in ``.pt`` must be on disk: Ultralytics would try to download it
    (a ConnectionError offline) after making the run folder. Looked for where Ultralytics looks, as given (after
    its yolov5n.pt → yolov5nu.pt renaming) and in its ``weights_dir``. A ``.yaml`` builds the model from scratch."""
    from ultralytics.utils import SETTINGS
    from ultralytics.utils.checks import check_yolov5u_filename

    for key in ("model", "pretrained"):
        value = overrides.get(key)
        if not isinstance(value, str) or not value.strip().lower().endswith(".pt"):
            continue
        name = check_yolov5u_filename(value.strip(), verbose=False)
        places = list(dict.fromkeys([Path(name).expanduser(), Path(SETTINGS["weights_dir"]) / name]))  # as given
        if any(p.is_file() for p in places):
            continue
        renamed = f" (Ultralytics reads {value} as {name})" if name != value.strip() else ""
        raise FileNotFoundError(
            f"{key}={value}: weights not on disk{renamed}, looked for {' and '.join(map(str, places))}; nothing is "
            f"downloaded: pass a local weights file ({key}=/path/to/{Path(name).name}) or a model YAML to train "
            f"from scratch (model={Path(name).stem}.yaml)")


def check_project(overrides) -> None:
    """The folder the run folder goes in (``project=``) must be writable, or makeable: tried before any work."""
    if overrides.get("resume"):
        return
    from datareduce.atomic import check_writable_dir

    project = Path(str(overrides.get("project", DEFAULTS["project"]))).expanduser()
    check_writable_dir(project, f"project={project}")


def train(args) -> DataReduceDetectionTrainer:
    """Train as ``args`` say; returns the trainer (its run folder holds ``log.jsonl``)."""
    overrides = dict(args.overrides)
    check_overrides(overrides)  # before any work
    check_run_folder(overrides)
    check_weights(overrides)
    check_project(overrides)
    flags = {name: getattr(args, name) for name in TrainerSettings.flag_names()}
    trainer_class = DataReduceDetectionTrainer.with_settings(lr_gamma=args.lr_gamma, **flags)
    resume = overrides.get("resume")  # a resumed run keeps its checkpoint's data, model and project
    if not resume or "data" in overrides or args.coco_json:
        overrides["data"] = str(prepare_data(args, overrides))
    if not resume:
        for key, value in DEFAULTS.items():
            overrides.setdefault(key, value)
    if "project" in overrides:  # Ultralytics resolves a relative one against its own settings, not the cwd
        overrides["project"] = str(Path(overrides["project"]).expanduser().resolve())
    trainer = trainer_class(overrides=overrides)
    print(reduce_line(trainer.settings.reduce, rho=rho_of(trainer)))  # what runs, with its effective settings
    trainer.train()
    return trainer


def rho_of(trainer):
    """The batch ADONIS / SB accumulate kept images to when ``--adonis-rho`` is unset: each process's batch."""
    batch, world = trainer.args.batch, max(getattr(trainer, "world_size", 1) or 1, 1)
    return batch // world if isinstance(batch, int) and batch > 0 else "the batch size"


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        trainer = train(args)
    except USER_ERRORS as exc:  # bad input: say what, no traceback
        if os.environ.get("DATAREDUCE_TRACEBACK"):
            raise
        print(f"yolo_train.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"log: {trainer.save_dir / 'log.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
