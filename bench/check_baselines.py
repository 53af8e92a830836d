"""Side by side, on the same synthetic per-sample losses: our InfoBatch and Selective Backprop against
re-statements of the rules in their authors' published code. No training, no GPU; about 10 s on one core.

    python bench/check_baselines.py                 # the issue's size: 3,000 samples, 30 epochs, batch 128
    python bench/check_baselines.py --n 600 --epochs 12

It prints Markdown tables (bench/baseline_check.md records a run and what it means). The authors' code is not
copied, vendored or imported: the two ``Authors*`` classes below are OUR RE-STATEMENT, in our own code, of the
algorithm their code implements, with the file and line of every rule cited, read at

* NUS-HPC-AI-Lab/InfoBatch @ 8bbb012: ``infobatch/infobatch.py`` (the released package, "released") and
  ``research/infobatch.py`` (the paper's research code, "research");
* angelajiang/SelectiveBackprop @ 7c41937: ``lib/calculators.py``, ``lib/hist.py``, ``lib/selectors.py``,
  ``lib/trainer.py``, ``lib/SelectiveBackpropper.py``, ``examples/train.py``.

The losses are synthetic and the same for both sides: sample i at epoch e has loss
``d_i · exp(−k_i · e) · ε`` (d_i log-normal around ln 10, k_i uniform, ε log-normal noise), so easy samples
fall fast and hard ones stay high, a right-skewed distribution like a real training run's. The losses do not
react to what is trained (no model), so this checks the *rules* (which samples, which weights, how many
back-props), not their effect on accuracy.
"""
from __future__ import annotations

import argparse
import collections
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datareduce import InfoBatchPruner, SelectiveBackpropSelector  # noqa: E402


# ============================================================================================ synthetic losses
class LossOracle:
    """The per-sample training loss of every sample at every epoch, fixed by ``seed`` (both sides read it)."""

    def __init__(self, n: int, seed: int = 0):
        rng = np.random.RandomState(seed)
        self.n = n
        self.difficulty = 2.3 * rng.lognormal(0.0, 0.3, n)
        self.rate = rng.uniform(0.02, 0.25, n)
        self.seed = seed

    def at(self, epoch: int) -> np.ndarray:
        noise = np.random.RandomState(self.seed * 7919 + 1 + epoch).lognormal(0.0, 0.25, self.n)
        return self.difficulty * np.exp(-self.rate * epoch) * noise


# ================================================================================================ InfoBatch
class AuthorsInfoBatch:
    """OUR RE-STATEMENT (not their code) of InfoBatch's pruning sampler, NUS-HPC-AI-Lab/InfoBatch @ 8bbb012.

    infobatch/infobatch.py (released):
      l.76      keep_ratio = min(1, max(0.1, 1 − prune_ratio))
      l.80      scores start at 3 for every sample (research/infobatch.py l.11: at 1; no effect, see below)
      l.124     well learned = score < mean of *all* scores (pruned samples keep their old, stale score)
      l.128-9   keep int(keep_ratio · |well|) of them, uniformly, without replacement
      l.130-3   weights reset to 1, the kept well-learned get 1/keep_ratio; visit = the rest ∪ those kept
      l.135     the visiting order is shuffled (no padding on one process, l.253-287 only under DDP)
      l.161     stop_prune = num_epochs · delta
      l.174     the sampler's constructor already runs reset() once, and l.198-200 runs it again at each
                epoch's iter(): epoch e (from 0) plans with iterations = e + 1 (l.190)
      l.181     prune while iterations ≤ stop_prune, else full data shuffled (l.145-148)
      l.183-4   weights are reset to 1 only when iterations == stop_prune + 1, so with a non-integer
                num_epochs·delta they are never reset and the last pruned epoch's weights stay on for every
                annealing epoch (``released=True``); research/infobatch.py l.82-84 resets them when
                seed ≤ stop_prune + 1, the first annealing epoch (``released=False``)
      l.107     update(): each visited sample's score := its per-sample training loss (before weighting)
      l.108-9   the loss returned for backward: mean over the batch of loss · weight
    """

    def __init__(self, n: int, num_epochs: int, prune_ratio: float = 0.5, delta: float = 0.875,
                 released: bool = True):
        self.n = n
        self.keep_ratio = min(1.0, max(0.1, 1.0 - prune_ratio))
        self.scores = np.full(n, 3.0)
        self.weights = np.ones(n)
        self.stop_prune = num_epochs * delta
        self.released = released
        self.iterations = 0
        self.well = np.zeros(n, dtype=bool)
        self.pruning = False
        self._reset()  # the constructor's plan (l.174), never trained

    def _prune(self, rng) -> np.ndarray:
        self.well = self.scores < self.scores.mean()
        well_idx = np.where(self.well)[0]
        chosen = rng.choice(well_idx, int(self.keep_ratio * len(well_idx)), replace=False)
        self.weights[:] = 1.0
        if len(chosen):
            self.weights[chosen] = 1.0 / self.keep_ratio
        visit = np.concatenate([np.where(~self.well)[0], chosen]).astype(np.int64)
        rng.shuffle(visit)
        return visit

    def _reset(self) -> np.ndarray:
        rng = np.random.RandomState(self.iterations)  # l.180: the global numpy RNG seeded by the counter
        if self.iterations > self.stop_prune:
            reset = (self.iterations == self.stop_prune + 1) if self.released else \
                (self.iterations <= self.stop_prune + 1)
            if reset:
                self.weights[:] = 1.0
            self.well = np.zeros(self.n, dtype=bool)
            self.pruning = False
            visit = rng.permutation(self.n)
        else:
            self.pruning = True
            visit = self._prune(rng)
        self.iterations += 1
        return visit

    def plan_epoch(self) -> np.ndarray:
        """The next epoch's visiting order (its weights are in ``weights``)."""
        return self._reset()

    def update(self, indices, losses) -> None:
        self.scores[np.asarray(indices)] = np.asarray(losses)


class OursBeforeFix(InfoBatchPruner):
    """Our pruner as it was before this check (a re-statement of the old line): pruned ⌈δ·N⌉ epochs."""

    def pruning(self, epoch: int) -> bool:
        return epoch < math.ceil(self.delta * self.num_epochs)


def _distinct(w) -> list:
    return sorted({round(float(x), 6) for x in np.asarray(w)})


def infobatch_same_scores(n: int = 3000, epochs: int = 30, seed: int = 0, ratio: float = 0.5,
                          delta: float = 0.875) -> list:
    """Per epoch, both rules planned from the *same* scores (ours, driven by the oracle's losses of what ours
    visits): how many they visit, whether they keep the same deterministic part (every sample at or above the
    mean), and the weights. The random half of the well-learned differs by RNG only."""
    oracle = LossOracle(n, seed)
    ours = InfoBatchPruner(n, epochs, ratio=ratio, delta=delta, seed=seed)
    research = AuthorsInfoBatch(n, epochs, ratio, delta, released=False)
    released = AuthorsInfoBatch(n, epochs, ratio, delta, released=True)
    rows = []
    for e in range(epochs):
        for a in (research, released):
            a.scores = ours.scores.numpy().astype(np.float64).copy()
        v_ours = ours.plan(e).numpy()
        w_ours = ours.loss_weights(torch.as_tensor(v_ours)).numpy()
        v_res, v_rel = research.plan_epoch(), released.plan_epoch()
        below = ours.scores < ours.scores.mean()
        hard_ours = set(v_ours[~below.numpy()[v_ours]].tolist()) if ours.pruning(e) else set(range(n))
        hard_res = set(v_res[~research.well[v_res]].tolist()) if research.pruning else set(range(n))
        rows.append({
            "epoch": e, "ours_pruning": ours.pruning(e), "authors_pruning": research.pruning,
            "below_mean": int(below.sum()),
            "ours_visited": len(v_ours), "authors_visited": len(v_res),
            "same_hard_set": hard_ours == hard_res,
            "ours_weights": _distinct(w_ours), "authors_weights": _distinct(research.weights[v_res]),
            "released_weights": _distinct(released.weights[v_rel]),
            "ours_mass": float(w_ours.sum()) / n, "authors_mass": float(research.weights[v_res].sum()) / n,
            "released_mass": float(released.weights[v_rel].sum()) / n,
        })
        ours.update(torch.as_tensor(v_ours), torch.as_tensor(oracle.at(e)[v_ours], dtype=torch.float32))
    return rows


def infobatch_closed_loop(n: int = 3000, epochs: int = 30, seed: int = 0, batch: int = 128,
                          ratio: float = 0.5, delta: float = 0.875) -> dict:
    """Each rule evolving its own scores from the losses of what it visits: samples and steps per epoch."""
    oracle = LossOracle(n, seed)
    sides = {"ours": InfoBatchPruner(n, epochs, ratio=ratio, delta=delta, seed=seed),
             "ours_before_fix": OursBeforeFix(n, epochs, ratio=ratio, delta=delta, seed=seed),
             "authors_released": AuthorsInfoBatch(n, epochs, ratio, delta, released=True),
             "authors_research": AuthorsInfoBatch(n, epochs, ratio, delta, released=False)}
    out = {k: {"visited": [], "steps": [], "mass": [], "pruning": []} for k in sides}
    for e in range(epochs):
        loss = oracle.at(e)
        for name, s in sides.items():
            if isinstance(s, InfoBatchPruner):
                v = s.plan(e).numpy()
                w = s.loss_weights(torch.as_tensor(v)).numpy()
                s.update(torch.as_tensor(v), torch.as_tensor(loss[v], dtype=torch.float32))
                out[name]["pruning"].append(s.pruning(e))
            else:
                v = s.plan_epoch()
                w = s.weights[v].copy()
                s.update(v, loss[v])
                out[name]["pruning"].append(s.pruning)
            out[name]["visited"].append(len(v))
            out[name]["steps"].append(-(-len(v) // batch))
            out[name]["mass"].append(float(w.sum()) / n)
    for name, o in out.items():
        o["backprop_fraction"] = sum(o["visited"]) / (n * epochs)
        o["steps_fraction"] = sum(o["steps"]) / (-(-n // batch) * epochs)
        o["pruned_epochs"] = sum(o["pruning"])  # epochs planned by pruning (epoch 0's plan prunes nothing)
    return out


def infobatch_expected_weight(n: int = 3000, epochs: int = 30, seed: int = 0, at_epoch: int = 10,
                              draws: int = 200) -> dict:
    """For one score vector (ours after ``at_epoch`` epochs), the per-sample expected gradient weight
    E[w_i · 1(i visited)] over ``draws`` redraws of each rule's plan: 1 for every sample is unbiased."""
    oracle = LossOracle(n, seed)
    p = InfoBatchPruner(n, epochs, seed=seed)
    for e in range(at_epoch):
        v = p.plan(e)
        p.update(v, torch.as_tensor(oracle.at(e)[v.numpy()], dtype=torch.float32))
    scores = p.scores.clone()
    acc = {"ours": np.zeros(n), "authors": np.zeros(n)}
    for d in range(draws):
        q = InfoBatchPruner(n, epochs, seed=1000 + d)
        q.scores = scores.clone()
        v = q.plan(at_epoch)
        acc["ours"][v.numpy()] += q.loss_weights(v).numpy()
        a = AuthorsInfoBatch(n, epochs, released=False)
        a.scores = scores.numpy().astype(np.float64)
        va = a._prune(np.random.RandomState(1000 + d))  # one pruning draw from these scores
        acc["authors"][va] += a.weights[va]
    well = (scores < scores.mean()).numpy()
    res = {}
    for k, s in acc.items():
        m = s / draws
        res[k] = {"mean_all": float(m.mean()), "mean_well": float(m[well].mean()), "mean_hard": float(m[~well].mean()),
                  "max_dev_well": float(np.abs(m[well] - 1).max())}
    res["well_fraction"] = float(well.mean())
    res["mc_sd_well"] = 1.0 / math.sqrt(draws)  # sd of a mean of `draws` {0, 2} coin flips
    return res


# ======================================================================================= Selective Backprop
class AuthorsSB:
    """OUR RE-STATEMENT (not their code) of SB's selection, angelajiang/SelectiveBackprop @ 7c41937.

    lib/SelectiveBackpropper.py l.33 num_images_to_prime = the training set; l.37 sampling_min = 0;
      l.39 max_history_len = 1024; l.64-75 the "relative" calculator and the "sampling" selector
    lib/selectors.py l.29-49, 123-132: until num_images_to_prime images are trained (examples/train.py l.268
      next_partition once per epoch: the whole first epoch) the baseline selector keeps everything and never
      computes a probability, so the loss history stays empty
    lib/calculators.py l.69-81: the batch's losses are appended to the history first, then each sample's
      probability is max(sampling_min, (percentile/100)^β)
    lib/hist.py l.30-47: a deque of the last 1024 losses; percentile = 100 · #{h < loss} / len (strictly below)
    lib/selectors.py l.104-114: kept when uniform(0, 1) < probability
    lib/trainer.py l.166-174: kept samples queue up until exactly batch_size are kept, then one back-prop;
      l.155-156, 175-182: at the epoch's last batch the remainder is trained as one short batch
    lib/backproppers.py l.45-68: the back-prop re-runs the kept samples in train mode, unweighted mean
    lib/forwardproppers.py l.40-44: the selection losses come from an eval-mode forward (not modelled here:
      both sides get the same losses)
    examples/train.py l.71: default β (prob_pow) = 3
    """

    def __init__(self, num_training_images: int, batch_size: int, beta: float = 3.0, history: int = 1024,
                 seed: int = 0):
        self.prime, self.batch_size, self.beta = num_training_images, batch_size, beta
        self.history = collections.deque(maxlen=history)
        self.num_trained = 0
        self.queue = 0  # kept samples waiting for a back-prop
        self.rng = np.random.RandomState(seed)

    def probabilities(self, losses: np.ndarray) -> np.ndarray:
        if self.num_trained < self.prime:
            return np.ones(len(losses))
        self.history.extend(losses.tolist())
        h = np.asarray(self.history)
        below = (h[None, :] < losses[:, None]).sum(1)
        return np.maximum(0.0, (below / len(h)) ** self.beta)

    def epoch(self, loss_batches) -> dict:
        kept, probs, steps = 0, [], 0
        for losses in loss_batches:
            p = self.probabilities(losses)
            k = int((self.rng.uniform(0, 1, len(p)) < p).sum())
            probs.append(p)
            kept += k
            self.queue += k
            steps += self.queue // self.batch_size
            self.queue %= self.batch_size
        if self.queue:  # the epoch's remainder: one short batch
            steps, self.queue = steps + 1, 0
        self.num_trained += sum(len(b) for b in loss_batches)  # next_partition, once per epoch
        return {"kept": kept, "steps": steps, "probs": np.concatenate(probs)}


def _cdf_le(hist: torch.Tensor, losses: torch.Tensor, beta: float) -> torch.Tensor:
    """Our keep probability before this check (a re-statement of the old line): #{h ≤ loss}/len, to the β."""
    h = hist.sort().values
    return (torch.searchsorted(h, losses.contiguous(), right=True).float() / h.numel()).pow(beta)


def sb_same_losses(n: int = 3000, epochs: int = 30, batch: int = 128, beta: float = 3.0, seed: int = 0,
                   history: int = 1024, fp16: bool = False) -> dict:
    """Both SB rules over the same batches of the same losses (the same visiting order each epoch): keep
    probabilities (ours now, ours before the fix, the authors'), realized keeps and back-prop steps."""
    oracle = LossOracle(n, seed)
    ours = SelectiveBackpropSelector(beta=beta, history=history, omega=0, seed=seed)
    authors = AuthorsSB(n, batch, beta=beta, history=history, seed=seed)
    rows, max_diff, max_diff_old, mean_diff_old, carry = [], 0.0, 0.0, [], 0
    for e in range(epochs):
        order = np.random.RandomState(10_000 + e).permutation(n)
        loss = oracle.at(e).astype(np.float32)
        if fp16:
            loss = loss.astype(np.float16).astype(np.float32)
        batches = [order[i:i + batch] for i in range(0, n, batch)]
        p_ours, kept_ours, steps_ours = [], 0, 0
        for idx in batches:
            lt = torch.as_tensor(loss[idx])
            keep = ours.select(lt, torch.as_tensor(idx), epoch=e)
            p = ours.keep_probability(lt) if not ours.in_warmup(e) else torch.ones(len(idx))
            if not ours.in_warmup(e):
                p_old = _cdf_le(ours.history.view(), lt, beta)
                d = (p_old - p).abs()
                max_diff_old = max(max_diff_old, float(d.max()))
                mean_diff_old.append(float((p_old - p).mean()))
            p_ours.append(p.numpy())
            kept_ours += int(keep.sum())
            carry += int(keep.sum())
            steps_ours += carry // batch
            carry %= batch
        if e == epochs - 1 and carry:  # ours carries the remainder into the next epoch; the last one flushes
            steps_ours, carry = steps_ours + 1, 0
        a = authors.epoch([loss[idx] for idx in batches])
        p_ours = np.concatenate(p_ours)
        max_diff = max(max_diff, float(np.abs(p_ours - a["probs"]).max()))
        q = np.quantile(loss, [0.1, 0.5, 0.9])
        rows.append({"epoch": e, "ours_mean_p": float(p_ours.mean()), "authors_mean_p": float(a["probs"].mean()),
                     "ours_kept": kept_ours, "authors_kept": a["kept"],
                     "ours_steps": steps_ours, "authors_steps": a["steps"],
                     "p_at_quantiles": [float(np.interp(x, np.sort(loss[order]), np.sort(p_ours))) for x in q]})
    total = n * epochs
    return {"rows": rows, "max_abs_prob_diff": max_diff, "max_abs_prob_diff_before_fix": max_diff_old,
            "mean_prob_shift_before_fix": float(np.mean(mean_diff_old)) if mean_diff_old else 0.0,
            "ours_backprop_fraction": sum(r["ours_kept"] for r in rows) / total,
            "authors_backprop_fraction": sum(r["authors_kept"] for r in rows) / total,
            "expected_backprop_fraction": sum(r["authors_mean_p"] for r in rows) * n / total}


def sb_ties() -> dict:
    """The case where ≤ and < part: a batch of tied losses that is the whole history (β = 3, history 1024)."""
    before, after = {}, {}
    for name, x in (("tied batch 0.5 over a uniform history", None), ("all 1024 tied", 0.7)):
        sel = SelectiveBackpropSelector(beta=3.0, history=1024, omega=-1, seed=0)
        if x is None:
            sel.history.push(torch.linspace(0, 1, 896))
            b = torch.full((128,), 0.5)
        else:
            sel.history.push(torch.full((896,), x))
            b = torch.full((128,), x)
        sel.observe(b)
        after[name] = float(sel.keep_probability(b)[0])
        before[name] = float(_cdf_le(sel.history.view(), b, 3.0)[0])
    return {"before_fix": before, "now_and_authors": after}


# ===================================================================================================== report
def _fmt_w(ws) -> str:
    return "/".join(f"{w:g}" for w in ws)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="training samples (default: 3000, 10 classes × 300)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    n, E, B = a.n, a.epochs, a.batch
    print(f"# bench/check_baselines.py --n {n} --epochs {E} --batch {B} --seed {a.seed}\n")

    print("## InfoBatch, same scores each epoch (r = 0.5, δ = 0.875)\n")
    print("| epoch | prunes (ours/authors) | below mean | visited ours | visited authors | same hard set | "
          "weights ours | weights authors (research) | weights authors (released) | Σw/N ours | Σw/N released |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in infobatch_same_scores(n, E, a.seed):
        print(f"| {r['epoch']} | {'y' if r['ours_pruning'] else 'n'}/{'y' if r['authors_pruning'] else 'n'} | "
              f"{r['below_mean']} | {r['ours_visited']} | {r['authors_visited']} | {r['same_hard_set']} | "
              f"{_fmt_w(r['ours_weights'])} | {_fmt_w(r['authors_weights'])} | {_fmt_w(r['released_weights'])} | "
              f"{r['ours_mass']:.3f} | {r['released_mass']:.3f} |")

    cl = infobatch_closed_loop(n, E, a.seed, B)
    print("\n## InfoBatch, each rule on its own scores (closed loop)\n")
    print("| rule | pruned epochs | back-prop fraction | step fraction | visited per epoch | "
          "Σw/N in the annealing epochs |")
    print("|---|---|---|---|---|---|")
    for name, o in cl.items():
        anneal = [m for m, p in zip(o["mass"], o["pruning"]) if not p]
        print(f"| {name} | {o['pruned_epochs']} | {o['backprop_fraction']:.4f} | {o['steps_fraction']:.4f} | "
              f"{' '.join(str(v) for v in o['visited'])} | {' '.join(f'{m:.3f}' for m in anneal)} |")

    ew = infobatch_expected_weight(n, E, a.seed)
    print("\n## InfoBatch, expected gradient weight E[w·1(visited)] per sample (200 redraws, scores of epoch 10)\n")
    print(f"well-learned share {ew['well_fraction']:.3f}; "
          f"Monte-Carlo sd of one sample's mean ≈ {ew['mc_sd_well']:.3f}\n")
    print("| rule | mean, all | mean, well-learned | mean, the rest | max |dev| of a well-learned sample |")
    print("|---|---|---|---|---|")
    for k in ("ours", "authors"):
        r = ew[k]
        print(f"| {k} | {r['mean_all']:.4f} | {r['mean_well']:.4f} | {r['mean_hard']:.4f} | {r['max_dev_well']:.3f} |")

    for beta in (3.0, 2.0):
        sb = sb_same_losses(n, E, B, beta=beta, seed=a.seed)
        print(f"\n## Selective Backprop, same losses, β = {beta:g}, history 1024, one priming epoch\n")
        print(f"max |p ours − p authors| = {sb['max_abs_prob_diff']:.2e}; before the fix (≤): max "
              f"{sb['max_abs_prob_diff_before_fix']:.4f}, mean shift {sb['mean_prob_shift_before_fix']:+.5f}; "
              f"back-prop fraction ours {sb['ours_backprop_fraction']:.4f}, "
              f"authors {sb['authors_backprop_fraction']:.4f}, "
              f"expected {sb['expected_backprop_fraction']:.4f}\n")
        print("| epoch | mean p ours | mean p authors | kept ours | kept authors | steps ours | steps authors | "
              "p at loss quantiles 10/50/90 % (interpolated) |")
        print("|---|---|---|---|---|---|---|---|")
        for r in sb["rows"]:
            if r["epoch"] in (0, 1, 2, E // 2, E - 1):
                q = "/".join(f"{x:.3f}" for x in r["p_at_quantiles"])
                print(f"| {r['epoch']} | {r['ours_mean_p']:.4f} | {r['authors_mean_p']:.4f} | {r['ours_kept']} | "
                      f"{r['authors_kept']} | {r['ours_steps']} | {r['authors_steps']} | {q} |")
    sb16 = sb_same_losses(n, E, B, beta=3.0, seed=a.seed, fp16=True)
    print(f"\nfp16-rounded losses (ties), β = 3: max |Δp| now {sb16['max_abs_prob_diff']:.2e}, before the fix "
          f"{sb16['max_abs_prob_diff_before_fix']:.4f} (mean shift {sb16['mean_prob_shift_before_fix']:+.5f})")
    t = sb_ties()
    print(f"tied batches, β = 3: before the fix {t['before_fix']}, now (= authors) {t['now_and_authors']}")


if __name__ == "__main__":
    main()
