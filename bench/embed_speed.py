"""How fast does IDS embed CIFAR-10 on this machine, and how much does a smaller input size change IDS's pick?

Measures efficientnet-lite0 images/s end to end (JPEG decode, resize, normalise, forward) through
``datareduce.embed.embed`` at several input sizes and batch sizes, extrapolates to CIFAR-10's 50,000 training
images, and compares the IDS kept set (alpha 0.8, easy, one centroid per class = the class mean, Euclidean)
computed from features at each smaller size with the one from the reference size (224 px). Prints one JSON
object (with the command line and the load average, since other processes on a shared CPU skew timings).

    python bench/embed_speed.py --data ~/.cache/datareduce-test-data/cifar10 --threads 2
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import ImageFolder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datareduce.embed import build_extractor, embed  # noqa: E402
from datareduce.manifest import dataset_fingerprint  # noqa: E402


def ids_easy(emb: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    """IDS keep set: per class the ceil(alpha*L) samples nearest the class mean, plus the nearest (prototype)."""
    kept = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        dist = np.linalg.norm(emb[members] - emb[members].mean(0), axis=1)
        order = np.argsort(dist, kind="stable")
        kept.append(members[order[: math.ceil(alpha * len(members))]])
        kept.append(members[order[:1]])
    return np.unique(np.concatenate(kept))


def ncm_accuracy(train, ytrain, test, ytest) -> float:
    """How well the features separate the classes: test images assigned to the nearest training class mean."""
    classes = np.unique(ytrain)
    centroids = np.stack([train[ytrain == c].mean(0) for c in classes])
    d2 = (test ** 2).sum(1)[:, None] - 2 * test @ centroids.T + (centroids ** 2).sum(1)[None]
    return round(float((classes[d2.argmin(1)] == ytest).mean()), 4)


def per_class_subset(ds: ImageFolder, per_class: int, offset: int = 0):
    """The first ``per_class`` images of each class after ``offset`` (ImageFolder lists class by class)."""
    targets = np.array(ds.targets)
    idx = np.concatenate([np.flatnonzero(targets == c)[offset:offset + per_class] for c in np.unique(targets)])
    return [ds.samples[i][0] for i in idx], targets[idx]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path.home() / ".cache/datareduce-test-data/cifar10"),
                    help="unpacked cifar10 folder (holding train/<class>/*.jpg)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the IDS part")
    ap.add_argument("--speed-threads", default="1,2",
                    help="torch thread counts to time; with 1 thread, CPU time per image does not depend on "
                         "other processes sharing the CPU, so it gives a contention-free estimate")
    ap.add_argument("--sizes", default="224,112,96,64,32", help="input sizes to time")
    ap.add_argument("--batch-sizes", default="64", help="embed() batch sizes to time")
    ap.add_argument("--n-speed", type=int, default=500, help="images timed per setting")
    ap.add_argument("--ids-per-class", type=int, default=200, help="images per class for the IDS overlap (x10)")
    ap.add_argument("--ids-sizes", default="224,112,96,64,48,32", help="input sizes compared; the first is the reference")
    ap.add_argument("--ids-batch-size", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=0.8)
    ap.add_argument("--cache-dir", default=None, help="embedding cache (default: a temporary folder)")
    ap.add_argument("--target-images", type=int, default=50000)
    args = ap.parse_args(argv)
    train = ImageFolder(os.path.join(args.data, "train"))
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpu_count": os.cpu_count(), "ids_threads": args.threads,
                    "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "loadavg_start": list(os.getloadavg())},
        "extractor": "efficientnet-lite0",
        "speed": [],
    }

    # ---- speed: the same images at each size and batch size (offset 0: the first images of each class)
    n_per_class = max(1, args.n_speed // 10)
    speed_paths, _ = per_class_subset(train, n_per_class)
    for size in [int(s) for s in args.sizes.split(",") if s]:  # --sizes "" skips the timing
        t0 = time.perf_counter()
        ex = build_extractor("efficientnet-lite0", image_size=size)
        build_s = time.perf_counter() - t0
        for threads in [int(t) for t in args.speed_threads.split(",")]:
            torch.set_num_threads(threads)
            embed(speed_paths[:32], ex, batch_size=16)  # warm-up (allocator, oneDNN kernels)
            for bs in [int(b) for b in args.batch_sizes.split(",")]:
                t0, c0 = time.perf_counter(), time.process_time()
                embed(speed_paths, ex, batch_size=bs)
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                ips = len(speed_paths) / dt
                row = {"image_size": size, "threads": threads, "batch_size": bs, "images": len(speed_paths),
                       "wall_s": round(dt, 2), "cpu_s": round(cpu, 2), "images_per_s": round(ips, 1),
                       "images_per_cpu_s": round(len(speed_paths) / cpu, 1), "build_s": round(build_s, 2),
                       f"est_minutes_{args.target_images}_wall": round(args.target_images / ips / 60, 2),
                       "loadavg_1min": round(os.getloadavg()[0], 2)}
                if threads == 1:
                    # CPU time of one thread is what the work costs, whoever else runs: on 2 idle cores the
                    # wall time lies between cpu/2 (perfect 2-thread scaling) and cpu (none).
                    per_image = cpu / len(speed_paths)
                    row[f"est_minutes_{args.target_images}_2_idle_cores"] = [
                        round(args.target_images * per_image / 2 / 60, 2), round(args.target_images * per_image / 60, 2)]
                result["speed"].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    torch.set_num_threads(args.threads)

    # ---- IDS overlap: kept set from each size's features against the reference size's
    ids_paths, labels = per_class_subset(train, args.ids_per_class)
    fp = dataset_fingerprint([os.path.relpath(p, args.data) for p in ids_paths])
    cache = args.cache_dir or tempfile.mkdtemp(prefix="embed-speed-")
    sizes = [int(s) for s in args.ids_sizes.split(",")]
    kept, timing, ncm = {}, {}, {}
    half = np.concatenate([np.flatnonzero(labels == c)[: args.ids_per_class // 2] for c in np.unique(labels)])
    rest = np.setdiff1d(np.arange(len(labels)), half)
    for size in sizes:
        ex = build_extractor("efficientnet-lite0", image_size=size)
        t0 = time.perf_counter()
        emb = embed(ids_paths, ex, cache_dir=cache, fingerprint=fp, batch_size=args.ids_batch_size)
        timing[size] = round(time.perf_counter() - t0, 2)
        kept[size] = ids_easy(emb, labels, args.alpha)
        ncm[size] = ncm_accuracy(emb[half], labels[half], emb[rest], labels[rest])
        print(json.dumps({"ids_size": size, "embed_s": timing[size]}), file=sys.stderr, flush=True)
    ref = kept[sizes[0]]
    n = len(ids_paths)
    removed_ref = np.setdiff1d(np.arange(n), ref)
    comparisons = []
    for size in sizes[1:]:
        removed = np.setdiff1d(np.arange(n), kept[size])
        comparisons.append({
            "image_size": size,
            "kept_overlap": round(len(np.intersect1d(kept[size], ref)) / len(ref), 4),
            "removed_overlap": round(len(np.intersect1d(removed, removed_ref)) / max(1, len(removed_ref)), 4),
        })
    kept_frac = len(ref) / n
    result["ids"] = {
        "images": n, "per_class": args.ids_per_class, "alpha": args.alpha, "mode": "easy",
        "reference_size": sizes[0], "kept": len(ref), "embed_seconds": timing,
        "nearest_class_mean_accuracy": ncm,
        "chance_kept_overlap": round(kept_frac, 4), "chance_removed_overlap": round(1 - kept_frac, 4),
        "vs_reference": comparisons,
        "note": "nearest_class_mean_accuracy: class means from half of each class, accuracy on the other half. "
                "kept_overlap = |kept(size) ∩ kept(ref)| / |kept(ref)|; removed_overlap the same for the "
                "removed samples; chance_* is what two random subsets of the same sizes would share on average",
    }
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
