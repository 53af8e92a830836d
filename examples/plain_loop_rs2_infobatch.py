#!/usr/bin/env python
"""RS2 or InfoBatch in your own PyTorch training loop: each epoch, visit the samples the method plans.

- **RS2** (``datareduce.RS2Subsets``): ``plan(epoch)`` is a fresh random ``fraction`` of the training set, every
  sample once before any twice; train on it as usual.
- **InfoBatch** (``datareduce.InfoBatchPruner``): ``plan(epoch)`` leaves out a random share of the well-learned
  samples (training loss below the mean); weight each kept sample's loss by ``loss_weights(indices)`` and hand
  the per-sample training losses back with ``update(indices, losses)`` — no extra forward.

The loop needs the samples' dataset indices (the last element of a batch) and nothing else. Runs on
scikit-learn's handwritten digits (real 8×8 images that ship with scikit-learn), a small MLP on the CPU in seconds.

    python examples/plain_loop_rs2_infobatch.py --method rs2 --fraction 0.3
    python examples/plain_loop_rs2_infobatch.py --method infobatch
"""
import argparse

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, Subset, TensorDataset

import datareduce


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", choices=("rs2", "infobatch"), default="rs2")
    parser.add_argument("--fraction", type=float, default=0.3, help="RS2: share of the data trained each epoch")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = order[:1400], order[1400:]
    dataset = TensorDataset(x[train], y[train], torch.arange(len(train)))  # (image, label, index)

    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    if args.method == "rs2":
        planner = datareduce.RS2Subsets(len(dataset), args.fraction, seed=args.seed)
    else:
        planner = datareduce.InfoBatchPruner(len(dataset), args.epochs, seed=args.seed)

    backprop = 0
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
            backprop += len(labels)
        with torch.no_grad():
            top1 = (model(x[test]).argmax(1) == y[test]).float().mean().item() * 100
        print(f"epoch {epoch:2d}: top-1 {top1:5.1f}%  visited {len(loader.dataset)} of {len(dataset)}")

    full = args.epochs * len(train)
    print(f"{args.method}: top-1 {top1:.1f}% after {args.epochs} epochs, {backprop} of {full} sample "
          f"back-propagations ({100 * backprop / full:.0f}%)")
    return top1, backprop


if __name__ == "__main__":
    main()
