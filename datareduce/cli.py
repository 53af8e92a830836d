"""The ``datareduce`` console command: a console face over the core (``demo``; ``ids`` and ``report`` to come)."""
from __future__ import annotations

import argparse
import sys


def cmd_demo(args) -> int:
    from . import demo

    print("datareduce demo — scikit-learn digits (1,797 real 8×8 images, 10 classes), CPU\n")
    out = demo.run(epochs=args.epochs, seed=args.seed)
    i = out["ids"]
    print(f"IDS (easy mode, alpha {i['alpha']}): kept {i['kept']} of {i['total']} training images, "
          "per class the ⌈α·L⌉ nearest to the class centroid plus the prototype:")
    print(f"  {'class':>5} {'kept':>9} {'max dist kept':>14} {'min dist dropped':>17}")
    for r in i["per_class"]:
        print(f"  {r['class']:>5} {r['kept']:>4}/{r['total']:<4} {r['kept_max_dist']:>14.3f} {r['dropped_min_dist']:>17.3f}")
    print("  every kept image is closer to its class centroid than every dropped one: IDS keeps the typical ones.\n")
    print(f"Training a small MLP for {args.epochs} epochs (batch 64):")
    print(f"  {'method':<40} {'top-1 %':>8} {'backprop':>9} {'kept/epoch (first→last)':>24}")
    for name, r in out["training"].items():
        kf = r["keep_fraction_per_epoch"]
        keep = f"{kf[0]:.2f} → {kf[-1]:.2f}" if kf else "all"
        print(f"  {name:<40} {r['top1']:>8.2f} {r['samples_backprop']:>9} {keep:>24}")
    print("\nADONIS keeps samples whose loss falls in a dense bin of the recent-loss histogram (PMF > θ), at most "
          "α of each batch,\nand trains on full batches of them; compare it with the random-keep control of the "
          "same budget.")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="datareduce", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="IDS and ADONIS on scikit-learn's digits, no download needed")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
