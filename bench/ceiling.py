"""Measure the cost of a forward-only and a forward+backward+step of a model on this machine (the ceiling of the boost).

With per-sample costs F (scoring forward) and S (training step), a method that scores a fraction s_f of the
samples and back-propagates a fraction s_b can at best be 1 / (s_f·F/S + s_b) times faster than full training.
f = F/S is also the weight of a scoring forward in the benchmark's counted cost (bench/summarize.py), read from
``<results>/ceiling.json``. The classification runner (bench/run.py) measures it for its model; the detection one
(bench/detection.py) for YOLO, or from the command line, on a quiet machine:

    python bench/ceiling.py --detection --out bench/results-detection     # yolov5n, batch 16, 96 px, the protocol's set

A detection measurement times what trainers/yolo_train.py does per batch: ADONIS's scoring forward (no grad,
BatchNorm on the batch's statistics, one detection loss per image) against Ultralytics' training step (forward,
loss, backward, gradient clipping, optimizer step, EMA update), on one real batch of the detection protocol's set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BUSY_LOAD = 1.0  # 1-minute load above which the ratio is skewed (0.32 and 4.5 beside trainers, 0.46 quiet)


def median_time(fn, repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measure(model: torch.nn.Module, batch: int = 128, size: int = 32, classes: int = 10, repeats: int = 10,
            device: str = "cpu", amp: bool = False) -> dict:
    """Median seconds per batch of a no-grad forward and of forward+backward+SGD step, and their ratio
    (on ``device``, under bf16/fp16 autocast with ``amp`` as the trainer's ``--amp``)."""
    device = torch.device(device)
    model = model.to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type) if amp and device.type == "cuda" else None

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def forward():
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            F.cross_entropy(model(x), y, reduction="none")
        sync()

    def step():
        opt.zero_grad()
        with torch.autocast(device.type, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        sync()

    out = {"forward_s": median_time(forward, repeats), "step_s": median_time(step, repeats)}
    out["forward_over_step"] = out["forward_s"] / out["step_s"]
    out.update(batch=batch, device=str(device), amp=amp)
    return out


def ceiling(forward_over_step: float, scored_fraction: float, backprop_fraction: float) -> float:
    """The best train boost at these fractions if selection itself were free."""
    return 1.0 / (scored_fraction * forward_over_step + backprop_fraction)


def measure_detection(data_dir: Path, model: str = "yolov5n.yaml", batch: int = 16, imgsz: int = 96,
                      repeats: int = 10, device: str = "cpu", optimizer: str = "AdamW", lr0: float = 0.004) -> dict:
    """Median seconds of ADONIS's scoring forward of one batch and of Ultralytics' training step on it, and
    their ratio, for a YOLO ``model`` from scratch on the first ``batch`` training images of the YOLO set at
    ``data_dir`` (a folder holding ``data.yaml``), at ``imgsz``, on ``device`` (fp32; on the CPU with the
    threads Ultralytics trains with, its ``NUM_THREADS``)."""
    sys.path.insert(0, str(REPO))
    from datareduce.integrations.ultralytics_env import ensure_offline

    ensure_offline()
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import NUM_THREADS, YAML
    from ultralytics.utils.torch_utils import ModelEMA

    from datareduce.integrations.ultralytics import batch_statistics_only
    from datareduce.integrations.ultralytics_loss import PerImageDetectionLoss

    device = torch.device(device)
    data = YAML.load(Path(data_dir) / "data.yaml")
    names = data["names"]
    cfg = get_cfg(overrides={"imgsz": imgsz, "mosaic": 0, "batch": batch})
    root = Path(data.get("path") or data_dir)
    dataset = build_yolo_dataset(cfg, str(root / data["train"]), batch, {"names": names, "nc": len(names),
                                                                          "channels": 3})
    raw = YOLODataset.collate_fn([dataset[i] for i in range(min(batch, len(dataset)))])
    raw = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in raw.items()}
    raw["img"] = raw["img"].float() / 255
    torch.manual_seed(0)
    net = DetectionModel(model, nc=len(names), verbose=False).to(device)
    net.args = cfg  # the loss gains, as the trainer sets them
    net.train()
    per_image = PerImageDetectionLoss(net)
    opt = getattr(torch.optim, optimizer)(net.parameters(), lr=lr0)
    ema = ModelEMA(net)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def forward():
        with torch.no_grad(), batch_statistics_only(net):
            per_image(net(raw["img"]), raw)
        sync()

    def step():
        loss, _ = net(raw)
        loss.sum().backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=10.0)
        opt.step()
        opt.zero_grad()
        ema.update(net)
        sync()

    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(NUM_THREADS)  # as Ultralytics' select_device does for CPU training
    try:
        out = {"forward_s": median_time(forward, repeats), "step_s": median_time(step, repeats)}
    finally:
        used = torch.get_num_threads()
        torch.set_num_threads(threads)
    out["forward_over_step"] = out["forward_s"] / out["step_s"]
    out.update(batch=len(raw["im_file"]), imgsz=imgsz, device=str(device), amp=False, threads=used)
    return out


def ensure_ceiling(out: Path, key: dict, measure_fn: Callable[[], dict], later: Optional[str] = None,
                   force: bool = False, load: Optional[float] = None,
                   committed: Optional[Iterable[Path]] = None) -> Optional[dict]:
    """``<out>/ceiling.json`` once (kept when it is there, unless ``force``): measured by ``measure_fn`` and
    stored with ``key`` (model, batch, device, amp, …), the load and the date. On a busy machine (1-minute
    ``load`` > 1.0; default: this machine's) a measurement with the same ``key`` among the ``committed`` ones
    (default: every other ``bench/results*/ceiling.json``) is reused instead, naming its source; with none, it is
    measured anyway with a warning, or, given ``later`` (the command that measures it), not at all, with a
    warning naming that command. ``force``: measured whatever the load. Returns what ceiling.json holds (None
    when nothing was written)."""
    target = out / "ceiling.json"
    if target.exists() and not force:
        return json.loads(target.read_text())
    from datareduce.atomic import write_text

    load = os.getloadavg()[0] if load is None else load
    if load > BUSY_LOAD:
        if not force:
            for other in sorted(HERE.glob("results*/ceiling.json")) if committed is None else committed:
                known = json.loads(Path(other).read_text())
                if Path(other).resolve() != target.resolve() and all(known.get(k) == v for k, v in key.items()):
                    known["source"] = (f"{_shown(other)} (this machine was busy, load {load:.1f}: not measured "
                                       "again)")
                    write_text(target, json.dumps(known, indent=1) + "\n")
                    return known
            if later:
                print(f"warning: the machine is busy (load {load:.1f}) and no quiet measurement of {key} is "
                      f"committed: {target} not written, so the counted costs of {out} have no scoring term yet; "
                      f"on a quiet machine run {later}", file=sys.stderr)
                return None
        print(f"warning: measuring the scoring/step ratio on a busy machine (load {load:.1f}); the counted costs "
              f"of {out} then depend on it: rerun bench/ceiling.py on a quiet machine", file=sys.stderr)
    result = {**key, **measure_fn(), "load": round(load, 2), "date": time.strftime("%Y-%m-%d")}
    write_text(target, json.dumps(result, indent=1) + "\n")
    return result


def _shown(path) -> str:
    """``path`` relative to the repository when it is inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def detection_key(model: str = "yolov5n.yaml", batch: int = 16, imgsz: int = 96, device: str = "cpu") -> dict:
    """What a detection measurement is reused by: the model, batch, input size, device and precision."""
    return {"task": "detect", "model": model, "batch": batch, "imgsz": imgsz, "device": device, "amp": False}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detection", action="store_true",
                   help="measure YOLO's scoring forward against its training step (required: the only measurement "
                        "this command makes; bench/run.py measures classification models itself)")
    p.add_argument("--out", type=Path, required=True, help="the results folder that gets ceiling.json")
    p.add_argument("--model", default="yolov5n.yaml")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--imgsz", type=int, default=96)
    p.add_argument("--repeats", type=int, default=10, help="timed calls of each (their median is kept)")
    p.add_argument("--data", type=Path, default=None,
                   help="a YOLO set (a folder with data.yaml; default: the detection protocol's, built if missing)")
    p.add_argument("--force", action="store_true",
                   help="measure again over an existing ceiling.json, and even on a busy machine")
    a = p.parse_args(argv)
    if not a.detection:
        print("ceiling.py: error: give --detection (this command measures YOLO only; bench/run.py measures the "
              "classification model of its runs itself)", file=sys.stderr)
        return 2
    if a.out.exists() and not a.out.is_dir():
        print(f"ceiling.py: error: --out {a.out}: exists and is not a folder", file=sys.stderr)
        return 2
    for flag, value in (("--batch", a.batch), ("--imgsz", a.imgsz), ("--repeats", a.repeats)):
        if value < 1:
            print(f"ceiling.py: error: {flag} {value}: must be at least 1", file=sys.stderr)
            return 2
    if a.data is not None and not (a.data / "data.yaml").is_file():
        print(f"ceiling.py: error: --data {a.data}: no data.yaml there (give a YOLO set's folder)", file=sys.stderr)
        return 2
    if a.data is None:
        sys.path.insert(0, str(REPO))
        from bench import detection_data

        a.data = detection_data.build(detection_data.BuildParams())
    a.out.mkdir(parents=True, exist_ok=True)
    result = ensure_ceiling(a.out, detection_key(a.model, a.batch, a.imgsz), lambda: measure_detection(
        a.data, a.model, a.batch, a.imgsz, a.repeats), force=a.force)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
