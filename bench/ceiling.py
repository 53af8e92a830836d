"""Measure the cost of a forward-only and a forward+backward+step of a model on this machine (the ceiling of the boost).

With per-sample costs F (scoring forward) and S (training step), a method that scores a fraction s_f of the
samples and back-propagates a fraction s_b can at best be 1 / (s_f·F/S + s_b) times faster than full training.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F


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
