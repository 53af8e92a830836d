"""Would one forward serve both scoring and training? (the paper's future work, §5.2) — measured, prints JSON.

    python bench/fused_step.py [--model resnet20] [--batch 128] [--keep 0.3] [--out bench/results/fused_step.json]

ADONIS now pays a no-grad scoring forward over the whole batch, then a training step (forward + backward) over the
kept samples. The paper suggests computing each loss once. Done literally — a forward *with* autograd over the whole
batch, selection, then a backward of the kept samples' loss — the backward still runs over every row of every
batched layer (the unkept rows get zero gradients but are computed), so it costs a full training step. This script
times both on this machine for the benchmark's model.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ceiling import median_time  # noqa: E402
from datareduce.atomic import write_text  # noqa: E402
from datareduce.models import get_model  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--keep", type=float, default=0.3, help="kept fraction of the batch (ADONIS α)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    model = get_model(a.model, num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(a.batch, 3, 32, 32), torch.randint(0, 10, (a.batch,))
    k = math.ceil(a.keep * a.batch)

    def separate():  # what ADONIS does: no-grad scoring forward, then a step on the kept rows
        with torch.no_grad():
            losses = F.cross_entropy(model(x), y, reduction="none")
        kept = losses.argsort(descending=True)[:k]
        opt.zero_grad()
        F.cross_entropy(model(x[kept]), y[kept]).backward()
        opt.step()

    def fused():  # one forward with autograd, the kept rows' loss back-propagated
        losses = F.cross_entropy(model(x), y, reduction="none")
        kept = losses.detach().argsort(descending=True)[:k]
        opt.zero_grad()
        losses[kept].mean().backward()
        opt.step()

    def full_step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    out = {"model": a.model, "batch": a.batch, "kept": k, "threads": torch.get_num_threads()}
    for name, fn in (("separate_s", separate), ("fused_s", fused), ("full_step_s", full_step)):
        out[name] = median_time(fn, a.repeats)
    out["fused_over_separate"] = out["fused_s"] / out["separate_s"]
    out["command"] = "python bench/fused_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        write_text(a.out, text + "\n")


if __name__ == "__main__":
    main()
