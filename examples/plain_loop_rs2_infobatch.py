#!/usr/bin/env python
"""RS2 or InfoBatch in your own PyTorch training loop: each epoch, visit the samples the method plans.

- **RS2** (``datareduce.RS2Subsets``): ``plan(epoch)`` is a fresh random ``fraction`` of the training set, every
  sample once before any twice; train on it as usual.
- **InfoBatch** (``datareduce.InfoBatchPruner``): ``plan(epoch)`` leaves out a random share of the well-learned
  samples (training loss below the mean); weight each kept sample's loss by ``loss_weights(indices)`` and hand
  the per-sample training losses back with ``update(indices, losses)`` — no extra forward.

The loop needs the samples' dataset indices (the last element of a batch) and nothing else. Runs on the trainers'
embedded data (scikit-learn's handwritten digits, 1,437 training images upscaled to 32×32 RGB; nothing is
downloaded), a small MLP on the CPU in seconds. ``--counts`` writes how often each sample was trained, as the
trainers' ``selection_counts.npy``: RS2 with the same fraction and seed trains exactly the samples of
``trainers/classify.py --reduce rs2``.

    python examples/plain_loop_rs2_infobatch.py --method rs2 --fraction 0.3
    python examples/plain_loop_rs2_infobatch.py --method infobatch
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

import datareduce
from datareduce.datasets import DigitsDataset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", choices=("rs2", "infobatch"), default="rs2")
    parser.add_argument("--fraction", type=float, default=0.3, help="RS2: share of the data trained each epoch")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--counts", help="write how often each training sample was trained to this .npy file")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    dataset, test = DigitsDataset(train=True), DigitsDataset(train=False)  # items: (image, label, index)
    test_images, test_labels, _ = next(iter(DataLoader(test, batch_size=len(test))))

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    if args.method == "rs2":
        planner = datareduce.RS2Subsets(len(dataset), args.fraction, seed=args.seed)
    else:
        planner = datareduce.InfoBatchPruner(len(dataset), args.epochs, seed=args.seed)

    counts = np.zeros(len(dataset), dtype=np.uint16)
    for epoch in range(args.epochs):
        # the epoch visits the plan, in the plan's (already shuffled) order
        loader = DataLoader(Subset(dataset, planner.plan(epoch).tolist()), batch_size=args.batch_size)
        for images, labels, indices in loader:
            optimizer.zero_grad()
            losses = F.cross_entropy(model(images), labels, reduction="none")
            if args.method == "infobatch":
                (losses * planner.loss_weights(indices)).mean().backward()
                planner.update(indices, losses.detach())
            else:
                losses.mean().backward()
            optimizer.step()
            counts[indices.numpy()] += 1
        with torch.no_grad():
            top1 = (model(test_images).argmax(1) == test_labels).float().mean().item() * 100
        print(f"epoch {epoch:2d}: top-1 {top1:5.1f}%  visited {len(loader.dataset)} of {len(dataset)}")

    if args.counts:
        np.save(args.counts, counts)
    backprop, full = int(counts.sum()), args.epochs * len(dataset)
    print(f"{args.method}: top-1 {top1:.1f}% after {args.epochs} epochs, {backprop} of {full} sample "
          f"back-propagations ({100 * backprop / full:.0f}%)")
    return top1, backprop


if __name__ == "__main__":
    main()
