#!/usr/bin/env python
"""ADONIS in your own PyTorch training loop: a plain loop, plus three things.

1. every sample carries its dataset index (the last element of a batch), so its loss can be cached and reused;
2. ``score(batch)`` gives the batch's per-sample losses under ``no_grad`` (it must not change the model);
3. ``for x, y, idx in loop.epoch(loader, epoch, last=...)`` replaces ``for x, y, idx in loader``: each loaded batch
   is scored, ADONIS keeps the samples whose loss falls in a dense bin of the recent-loss histogram (at most α of
   each batch), and the kept samples come out as batches of exactly ``rho`` samples to train on.

Runs on the trainers' embedded data (scikit-learn's handwritten digits, 1,437 training images upscaled to 32×32
RGB; nothing is downloaded), a small MLP on the CPU in seconds. ``--full`` trains the same loop without
selection, to compare.

    python examples/plain_loop_adonis.py            # ADONIS
    python examples/plain_loop_adonis.py --full     # every sample, every epoch
"""
import argparse

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import datareduce
from datareduce.datasets import DigitsDataset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true", help="train on every sample (no ADONIS), to compare")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    # (1) the dataset yields (image, label, index)
    train, test = DigitsDataset(train=True), DigitsDataset(train=False)
    test_images, test_labels, _ = next(iter(DataLoader(test, batch_size=len(test))))
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(args.seed))

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    # (2) per-sample losses of a batch, without gradients
    def score(batch):
        images, labels, _ = batch
        with torch.no_grad():
            return F.cross_entropy(model(images), labels, reduction="none")

    selector = datareduce.AdonisSelector(theta=0.05, alpha=0.3, eta=2, seed=args.seed)
    loop = datareduce.OnlineSelection(selector, score, rho=args.batch_size)

    backprop = 0
    for epoch in range(args.epochs):
        # (3) the only change to the loop itself
        batches = loader if args.full else loop.epoch(loader, epoch, last=epoch == args.epochs - 1)
        for images, labels, _ in batches:
            optimizer.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
            backprop += len(labels)
        with torch.no_grad():
            top1 = (model(test_images).argmax(1) == test_labels).float().mean().item() * 100
        kept = "" if args.full else f"  kept {loop.stats.as_record()['keep_fraction']:.2f} of the epoch"
        print(f"epoch {epoch:2d}: top-1 {top1:5.1f}%{kept}")

    full = args.epochs * len(train)
    method = "full data" if args.full else "ADONIS"
    print(f"{method}: top-1 {top1:.1f}% after {args.epochs} epochs, {backprop} of {full} sample back-propagations "
          f"({100 * backprop / full:.0f}%)")
    return top1, backprop


if __name__ == "__main__":
    main()
