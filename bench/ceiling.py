"""Measure the cost of a forward-only and a forward+backward+step of a model on this machine (SPEC §6 ceiling).

With per-sample costs F (scoring forward) and S (training step), a method that scores a fraction s_f of the
samples and back-propagates a fraction s_b can at best be 1 / (s_f·F/S + s_b) times faster than full training.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F


def measure(model: torch.nn.Module, batch: int = 128, size: int = 32, classes: int = 10, repeats: int = 10) -> dict:
    """Median seconds per batch of a no-grad forward and of forward+backward+SGD step, and their ratio."""
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, classes, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def forward():
        with torch.no_grad():
            F.cross_entropy(model(x), y, reduction="none")

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    out = {}
    for name, fn in (("forward_s", forward), ("step_s", step)):
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[name] = sorted(times)[len(times) // 2]
    out["forward_over_step"] = out["forward_s"] / out["step_s"]
    out["batch"] = batch
    return out


def ceiling(forward_over_step: float, scored_fraction: float, backprop_fraction: float) -> float:
    """The best train boost at these fractions if selection itself were free."""
    return 1.0 / (scored_fraction * forward_over_step + backprop_fraction)
