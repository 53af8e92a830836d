#!/usr/bin/env python
"""IDS in your own PyTorch training loop: select a representative subset once, before training, and train on it.

1. embed every training image once with a pretrained feature extractor (efficientnet-lite0's ImageNet weights
   come with the ``[ids]`` extra; nothing is downloaded);
2. ``offline.build_manifest`` keeps, per class, the ⌈α·L⌉ samples nearest the class centroid plus the one
   nearest it (the prototype) and records them as a manifest — the one ``trainers/classify.py --ids-alpha`` and
   ``datareduce ids`` write for the same data, so ``--manifest`` hands this subset to the trainer
   (``--ids-manifest``);
3. the plain loop trains on ``Subset(dataset, kept)``: nothing else changes.

Runs on the trainers' embedded data (scikit-learn's handwritten digits, 1,437 training images upscaled to 32×32
RGB; nothing is downloaded), a small MLP on the CPU in well under a minute. ``--full`` trains the same loop on
every sample, to compare.

    python examples/plain_loop_ids.py --alpha 0.5
    python examples/plain_loop_ids.py --alpha 0.5 --manifest ids.json   # then --ids-manifest ids.json
    python examples/plain_loop_ids.py --full
"""
import argparse

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from datareduce import EmbedConfig, IDSConfig, ReduceConfig, manifest, offline
from datareduce.datasets import DigitsDataset
from datareduce.embed import build_extractor, embed
from datareduce.integrations.classification.training_set import raw_images


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alpha", type=float, default=0.5, help="share of each class kept (default: 0.5)")
    parser.add_argument("--image-size", type=int, default=EmbedConfig.image_size,
                        help="side of the images the extractor sees (default: the trainers' %(default)s px)")
    parser.add_argument("--manifest", help="also write the selection to this file (a datareduce manifest)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true", help="train on every sample (no IDS), to compare")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    train, test = DigitsDataset(train=True), DigitsDataset(train=False)  # items: (image, label, index)
    test_images, test_labels, _ = next(iter(DataLoader(test, batch_size=len(test))))

    kept = list(range(len(train)))
    if not args.full:
        # (1) embed the training images (the PIL images the trainer embeds; your own data: its image file paths)
        cfg = ReduceConfig(ids=IDSConfig(alpha=args.alpha, seed=args.seed),
                           embed=EmbedConfig(image_size=args.image_size), seed=args.seed)
        extractor = build_extractor(cfg.embed.extractor, image_size=cfg.embed.image_size)
        embeddings = embed(raw_images(train), extractor)
        # (2) select; the manifest names the kept samples by the dataset's sample ids
        keys = train.sample_keys()
        selection = offline.build_manifest(cfg, keys, embeddings, train.targets, train.classes,
                                           offline.extractor_record(cfg.embed, extractor))
        kept = manifest.kept_indices(selection, keys)
        if args.manifest:
            manifest.write(args.manifest, selection)
        print(f"IDS kept {len(kept)} of {len(train)} training images (α {args.alpha}, {extractor.name} at "
              f"{extractor.image_size} px)")
    # (3) the only change to the loop: it loads the subset
    loader = DataLoader(Subset(train, kept), batch_size=args.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(args.seed))

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    backprop = 0
    for epoch in range(args.epochs):
        for images, labels, _ in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
            backprop += len(labels)
        with torch.no_grad():
            top1 = (model(test_images).argmax(1) == test_labels).float().mean().item() * 100
        print(f"epoch {epoch:2d}: top-1 {top1:5.1f}%")

    full = args.epochs * len(train)
    method = "full data" if args.full else "IDS"
    print(f"{method}: top-1 {top1:.1f}% after {args.epochs} epochs, {backprop} of {full} sample back-propagations "
          f"({100 * backprop / full:.0f}%)")
    return top1, backprop


if __name__ == "__main__":
    main()
