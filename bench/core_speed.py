"""Speed of the core selection code on this machine: prints JSON.

    python bench/core_speed.py
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datareduce import AdonisSelector, ids  # noqa: E402


def per_call(fn, repeats):
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main():
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(256, generator=gen).exp() for _ in range(64)]
    sel = AdonisSelector(history=512, eta=3)
    it = iter(range(10**9))
    out = {"adonis_select_256_ms": 1e3 * per_call(lambda: sel.select(batches[next(it) % 64]), 500)}
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50_000, 512)).astype(np.float32)
    labels = np.repeat(np.arange(10), 5_000)
    out["ids_select_50k_x_512_s"] = per_call(lambda: ids.select(emb, labels, alpha=0.8), 3)
    out["ids_select_50k_x_512_dataset_wide_s"] = per_call(lambda: ids.select(emb, None, alpha=0.8), 3)
    out["ids_select_50k_x_512_prototypes3_s"] = per_call(lambda: ids.select(emb, labels, alpha=0.8, prototypes=3), 1)
    out["threads"] = torch.get_num_threads()
    out["command"] = "python bench/core_speed.py"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
