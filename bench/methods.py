"""The methods the benchmark compares, as trainer flags (one place, shared by the classification and detection runs)."""
from __future__ import annotations


def classification_methods(epochs: int) -> dict:
    """Method name → extra flags for trainers/classify.py. γ is 60 % of the epochs, as the paper's 120 of 200."""
    gamma = max(1, round(0.6 * epochs))
    return {
        "full": [],
        "ids": ["--ids-alpha", "0.8"],
        "ids-gamma": ["--ids-alpha", "0.8", "--ids-gamma", str(gamma)],
        "adonis-eta1": ["--adonis-eta", "1"],
        "adonis-eta2": ["--adonis-eta", "2"],
        "adonis-eta3": ["--adonis-eta", "3"],
        "ids-gamma+adonis-eta3": ["--ids-alpha", "0.8", "--ids-gamma", str(gamma), "--adonis-eta", "3"],
        "sb": ["--reduce", "sb"],
        "stale-sb": ["--reduce", "stale-sb"],
        "composer-sb": ["--reduce", "composer-sb"],
        "infobatch": ["--reduce", "infobatch"],
        "ssp": ["--reduce", "ssp"],
        "rpc": ["--reduce", "rpc"],
        "rpd": ["--reduce", "rpd"],
        # the control at ADONIS η=3's measured budget; the fraction is filled in by the runner
        "random-keep": ["--reduce", "random-keep", "--random-keep", "{adonis-eta3.keep_fraction}"],
        # variants of ADONIS η=3
        "adonis-eta3-balance": ["--adonis-eta", "3", "--adonis-balance"],
        "adonis-eta3-floor": ["--adonis-eta", "3", "--adonis-floor", "0.1"],
        "adonis-eta3-floor-rescale": ["--adonis-eta", "3", "--adonis-floor", "0.1", "--adonis-rescale"],
        "adonis-eta3-anneal": ["--adonis-eta", "3", "--adonis-anneal", str(max(1, epochs // 5))],
        "adonis-eta3-decay": ["--adonis-eta", "3", "--adonis-decay", "0.5"],
        "adonis-eta3-evalbn": ["--adonis-eta", "3", "--score-bn", "running"],  # score-mode effect (diagnosis)
        # the paper's future work: the training forward's losses refresh the cache (fewer scoring forwards)
        "adonis-eta3-reuse-train-loss": ["--adonis-eta", "3", "--adonis-reuse-train-loss"],
        # the same selections as adonis-eta3, every sample loaded: what planning η-reuse epochs saves
        "adonis-eta3-load-all": ["--adonis-eta", "3", "--load-all-samples"],
        # the paper's open readings (each against adonis-eta3, the defaults: ω 0, clip drop, cap batch, θ 0.12,
        # Sturges bins)
        "adonis-eta3-omega-none": ["--adonis-eta", "3", "--adonis-omega", "-1"],  # select from the first batch
        "adonis-eta3-clamp": ["--adonis-eta", "3", "--adonis-clip", "clamp"],
        "adonis-eta3-cap-candidates": ["--adonis-eta", "3", "--adonis-cap", "candidates"],
        "adonis-eta3-cap-none": ["--adonis-eta", "3", "--adonis-cap", "none"],
        "adonis-eta3-theta0.1": ["--adonis-eta", "3", "--adonis-theta", "0.1"],
        "adonis-eta3-sqrt": ["--adonis-eta", "3", "--adonis-bins", "sqrt"],
        # the feedback-loop fix: keep all but half of the well-learned samples, reweighted, full data at the end
        "adonis-eta3-prune": ["--adonis-eta", "3", "--adonis-prune", "0.5", "--adonis-rescale",
                              "--adonis-anneal", str(max(1, round(0.125 * epochs)))],
        # the same idea drawing the pruned share from every dense bin, each training loss refreshing the cache
        # (no scoring forward for a trained sample): the candidates for the prune mode (--adonis-mode prune is dense0.5)
        **{f"adonis-eta3-prune-dense{p:g}-reuse": [
            "--adonis-eta", "3", "--adonis-prune", str(p), "--adonis-prune-pool", "dense", "--adonis-rescale",
            "--adonis-reuse-train-loss", "--adonis-anneal", str(max(1, round(0.125 * epochs)))] for p in (0.5, 0.7)},
        "adonis-prune": ["--adonis-mode", "prune"],  # the recommended online mode, as a user types it
        "adonis-eta3-balance-floor-anneal": ["--adonis-eta", "3", "--adonis-balance", "--adonis-floor", "0.1",
                                             "--adonis-anneal", str(max(1, epochs // 5))],
    }


def detection_methods(epochs: int) -> dict:
    """Method name → extra arguments for trainers/yolo_train.py (our flags and Ultralytics ``key=value``s). γ is
    60 % of the epochs, as in the classification table; ``full-c<c>`` are frontier points (the runner scales
    the epochs); ``fraction0.8`` is Ultralytics' own reduction, the first 80 % of the training images."""
    return {
        "full": [],
        "full-c0.33": [],
        "full-c0.5": [],
        "full-c0.8": [],
        "ids": ["--ids-alpha", "0.8"],
        "ids-gamma": ["--ids-alpha", "0.8", "--ids-gamma", str(max(1, round(0.6 * epochs)))],
        "rpd": ["--reduce", "rpd"],
        "fraction0.8": ["fraction=0.8"],
        "adonis-eta3": ["--adonis-eta", "3"],
        "adonis-prune": ["--adonis-mode", "prune"],
        "infobatch": ["--reduce", "infobatch"],
    }


FRONTIER = (0.25, 0.33, 0.5, 0.75)  # compute fractions c of the full run: full data, epochs × c, schedule compressed


def frontier_epochs(c: float, epochs: int) -> int:
    """Epochs of the frontier point ``c``: the full run's count scaled, at least one."""
    return max(1, round(c * epochs))


def frontier_methods() -> dict:
    """``full-c0.5`` etc.: full data for c × the epochs (the runner sets --epochs; the cosine schedule of the
    long protocol then decays fully over the shorter run)."""
    return {f"full-c{c:g}": [] for c in FRONTIER}


def budget_methods() -> dict:
    """Random controls at another method's measured back-prop budget: ``rs2@M`` (a fresh random subset each
    epoch) and ``random-keep@M`` (a random share of each batch); the runner fills in M's fraction."""
    out = {}
    for ref in ("adonis-eta3", "infobatch"):
        out[f"rs2@{ref}"] = ["--reduce", "rs2", "--rs2-fraction", f"{{{ref}.backprop_fraction}}"]
        out[f"random-keep@{ref}"] = ["--reduce", "random-keep", "--random-keep", f"{{{ref}.backprop_fraction}}"]
    return out


PAPER_TABLE = [  # the methods of the README's main table, in the paper's order
    "full", "ids", "ids-gamma", "adonis-eta1", "adonis-eta2", "adonis-eta3", "ids-gamma+adonis-eta3",
    "sb", "stale-sb", "composer-sb", "infobatch", "ssp", "rpc", "rpd", "random-keep",
]
