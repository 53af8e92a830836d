"""The ``--ids-*``, ``--adonis-*`` and ``--reduce`` command-line flags, defined once for every trainer and patch.

``add_reduce_arguments(parser)`` adds them to any argparse parser; ``config_from_args(args)`` turns the parsed
namespace into a validated :class:`~datareduce.config.ReduceConfig`. Any ``--adonis-*`` flag switches ADONIS
on, and any IDS selection flag (``--ids-alpha``, ``--ids-mode``, ``--ids-gamma``, ``--ids-prototypes``,
``--ids-manifest``) switches IDS on; their defaults are the paper's (Table A2).
"""
from __future__ import annotations

import argparse

from .adonis import BIN_RULES, CAP_MODES, CLIP_MODES, PRUNE_POOLS
from .config import ADONIS_MODES, METHODS, AdonisConfig, EmbedConfig, IDSConfig, ReduceConfig
from .ids import MODES

_ADONIS = {  # flag suffix -> (type, help); defaults come from AdonisConfig
    "eta": (int, "epochs a scored loss is reused before re-scoring (paper η)"),
    "theta": (float, "PMF threshold: keep samples in histogram bins with PMF > θ (0.1-0.7 usable)"),
    "alpha": (float, "at most ⌈α·n⌉ of a forward batch's candidates are kept, drawn at random"),
    "sigma": (float, "history values beyond mean ± σ·std are clipped from the histogram"),
    "history": (int, "length l of the loss history ring buffer"),
    "bins": (str, "bin-count rule: " + ", ".join(BIN_RULES)),
    "omega": (int, "warm-up: epochs i ≤ ω (counted from 0) train on every sample, as Algorithm 1 line 11; "
                   "0 trains epoch 0 in full, -1 selects from the first batch"),
    "rho": (int, "training batch size that kept samples are accumulated to (default: the batch size)"),
    # the paper's open readings (Figure 3 caption; Appendix B)
    "clip": (str, "history values beyond mean ± σ·std: drop them (never candidates) or clamp them to the edge "
                  "(high losses land in the top bin)"),
    "cap": (str, "what α caps: batch = at most ⌈α·n⌉ of a forward batch, candidates = ⌈α·|candidates|⌉, "
                 "none = keep every candidate"),
    # variants, off by default
    "floor": (float, "variant: keep a uniform random ⌈floor·n⌉ of each batch first, inside the α budget"),
    "anneal": (int, "variant: train the last N epochs on every sample"),
    "decay": (float, "variant: recency-weighted histogram, weight decay^(age in batches)"),
    "prune": (float, "variant: keep every sample except a random share P of the pool (--adonis-prune-pool); "
                     "with --adonis-rescale the kept pool samples weigh 1/(1-P)"),
    "prune_pool": (str, "variant: which samples --adonis-prune draws from: learned = dense bins below the mean "
                        "loss, dense = every dense bin (only the sparse bins are always trained)"),
}
_ADONIS_SWITCHES = {
    "balance": "variant: cap each class at ⌈α·n_c⌉ of its candidates (class-balanced selection)",
    "rescale": "variant: weight kept samples by 1 / their stratum's keep rate (unbiased loss estimate)",
    "reuse_train_loss": "variant: the training forward's losses refresh the loss cache, so a trained sample "
                        "needs no scoring forward for η epochs (paper §5.2: compute each loss once)",
}
_IDS_SELECT = ("alpha", "mode", "gamma", "prototypes", "manifest")


def add_reduce_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the data-reduction flag groups to ``parser`` (returns it)."""
    a, i = AdonisConfig(), IDSConfig()
    g = parser.add_argument_group("ADONIS (online importance sampling, paper §3.1)")
    g.add_argument("--adonis", action="store_true", help="train with ADONIS (implied by any --adonis-* flag)")
    g.add_argument("--adonis-mode", choices=ADONIS_MODES, default=None,
                   help="paper: Algorithm 1 with the paper's values (Table A2); prune: ADONIS's histogram "
                        "prunes half of the typical samples of each batch, reweights the rest, always trains the "
                        "rare ones, reuses training losses and trains the last 1/8 of the epochs in full. Other "
                        "--adonis-* flags override either (default: paper)")
    for name, (typ, text) in _ADONIS.items():
        default = getattr(a, name)
        choices = {"bins": BIN_RULES, "clip": CLIP_MODES, "cap": CAP_MODES, "prune_pool": PRUNE_POOLS}.get(name)
        g.add_argument(f"--adonis-{name.replace('_', '-')}", dest=f"adonis_{name}", type=typ, default=None,
                       choices=choices,
                       help=f"{text} (default: {default})")

    for name, text in _ADONIS_SWITCHES.items():
        g.add_argument(f"--adonis-{name.replace('_', '-')}", dest=f"adonis_{name}", action="store_const", const=True,
                       default=None, help=text)
    g.add_argument("--load-all-samples", action="store_true",
                   help="load every sample even in epochs whose selection can be made from cached losses alone "
                        "(η-reuse epochs, random-keep): the slower path, for comparison (classification trainer)")

    g = parser.add_argument_group("IDS (offline representative subset, paper §3.2)")
    g.add_argument("--ids", action="store_true", help="train on an IDS subset (implied by --ids-alpha etc.)")
    g.add_argument("--ids-alpha", type=float, default=None, help=f"fraction kept per class (default: {i.alpha})")
    g.add_argument("--ids-mode", choices=MODES, default=None,
                   help=f"easy: nearest the class centroid first; hard: farthest first (default: {i.mode})")
    g.add_argument("--ids-gamma", type=int, default=None,
                   help="epoch to switch from the easy to the hard subset (paper: 180 CIFAR-10, 120 CIFAR-100, "
                        "14 ImageNet, 60 COCO; default: no switch)")
    g.add_argument("--ids-prototypes", type=int, default=None,
                   help=f"K-means centroids per class (default: {i.prototypes})")
    g.add_argument("--ids-manifest", default=None, help="use the subset of a manifest written earlier")
    e = EmbedConfig()
    g.add_argument("--ids-extractor", default=e.extractor,
                   help="feature extractor: efficientnet-lite0 (pretrained, ships offline), a torchvision model "
                        f"name, or a checkpoint file (default: {e.extractor})")
    g.add_argument("--ids-weights", default=None,
                   help="local weights file for --ids-extractor, or a torchvision weights name found in the torch "
                        "hub cache (never downloaded)")
    g.add_argument("--ids-image-size", type=int, default=e.image_size,
                   help=f"input size for the extractor (default: {e.image_size}; 224 is efficientnet-lite0's native "
                        "size, better features but ~5x slower on a CPU)")
    g.add_argument("--ids-cache-dir", default=None, help="where embeddings are cached (default: ~/.cache/datareduce)")

    g = parser.add_argument_group("Baselines")
    g.add_argument("--reduce", choices=METHODS, default="full", help="baseline method (default: full)")
    g.add_argument("--reduce-alpha", type=float, default=0.8, help="kept fraction for ssp / rpc / rpd (default: 0.8)")
    g.add_argument("--sb-beta", type=float, default=2.0, help="SB: keep probability CDF(loss)^β (default: 2)")
    g.add_argument("--sb-history", type=int, default=1024, help="SB: loss history length (default: 1024)")
    g.add_argument("--sb-staleness", type=int, default=None,
                   help="SB: epochs a loss is reused (default: 1 for sb, 2 for stale-sb)")
    g.add_argument("--composer-keep", type=float, default=0.5, help="Composer SB: kept fraction (default: 0.5)")
    g.add_argument("--composer-start", type=float, default=0.5, help="Composer SB: start, fraction of training")
    g.add_argument("--composer-end", type=float, default=0.9, help="Composer SB: end, fraction of training")
    g.add_argument("--composer-interrupt", type=int, default=2, help="Composer SB: every n-th batch trained in full")
    g.add_argument("--infobatch-ratio", type=float, default=0.5, help="InfoBatch: pruned fraction r (default: 0.5)")
    g.add_argument("--random-keep", type=float, default=0.3,
                   help="random-keep control: kept fraction of each batch (default: 0.3, ADONIS's α)")
    g.add_argument("--infobatch-delta", type=float, default=0.875,
                   help="InfoBatch: prune during the first δ of the epochs (default: 0.875)")
    g.add_argument("--rs2-fraction", type=float, default=0.5,
                   help="RS2: fraction of the training set trained each epoch, a fresh random subset drawn without "
                        "replacement across epochs (default: 0.5)")
    return parser


def config_from_args(args: argparse.Namespace, seed=None, train_losses: bool = True, sample_weights: bool = True,
                     epochs=None) -> ReduceConfig:
    """The validated :class:`ReduceConfig` that ``args`` asks for (``seed`` defaults to ``args.seed`` or 0,
    ``epochs`` to ``args.epochs``).

    ``train_losses`` and ``sample_weights``: whether the host's training step hands back per-sample losses and
    takes per-sample loss weights (``--adonis-mode prune`` uses them where it can, see
    :meth:`AdonisConfig.from_mode`)."""
    seed = seed if seed is not None else (getattr(args, "seed", None) or 0)
    adonis = None
    given = {k: getattr(args, f"adonis_{k}") for k in (*_ADONIS, *_ADONIS_SWITCHES)
             if getattr(args, f"adonis_{k}") is not None}
    mode = getattr(args, "adonis_mode", None)
    if args.adonis or given or mode:
        adonis = AdonisConfig.from_mode(mode or "paper", epochs=epochs or getattr(args, "epochs", None),
                                        train_losses=train_losses, sample_weights=sample_weights, seed=seed,
                                        **given)
    ids = None
    chosen = {k: getattr(args, f"ids_{k}") for k in _IDS_SELECT if getattr(args, f"ids_{k}") is not None}
    if args.ids or chosen:
        ids = IDSConfig(seed=seed, **chosen)
    embed = EmbedConfig(extractor=args.ids_extractor, weights=args.ids_weights,
                        image_size=args.ids_image_size, cache_dir=args.ids_cache_dir)
    return ReduceConfig(method=args.reduce, ids=ids, adonis=adonis, embed=embed, alpha=args.reduce_alpha,
                        sb_beta=args.sb_beta, sb_history=args.sb_history, sb_staleness=args.sb_staleness,
                        composer_keep=args.composer_keep, composer_start=args.composer_start,
                        composer_end=args.composer_end, composer_interrupt=args.composer_interrupt,
                        infobatch_ratio=args.infobatch_ratio, infobatch_delta=args.infobatch_delta,
                        random_keep=args.random_keep, rs2_fraction=getattr(args, "rs2_fraction", 0.5),
                        load_all=getattr(args, "load_all_samples", False), seed=seed)


def read_config_file(path, parser: argparse.ArgumentParser):
    """Split a ``--config`` YAML mapping into (argparse defaults for ``parser``'s own flags, the other keys).

    Keys are flag names with or without dashes (``lr-milestones`` or ``lr_milestones``). The flag values become
    defaults, so flags given on the command line still win; a bad choice is a ``parser.error``. What to do with
    the other keys is the caller's: an error for the classification trainer, Ultralytics arguments for YOLO.
    """
    import yaml
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        parser.error(f"--config {path}: no such file")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        parser.error(f"--config {path}: expected a mapping of flag names to values")
    by_name = {}
    for action in parser._actions:
        for opt in action.option_strings:
            if opt.startswith("--"):
                by_name[opt[2:]] = action
    flags, other = {}, {}
    for key, value in data.items():
        action = by_name.get(str(key).replace("_", "-"))
        if action is None or action.dest in ("help", "config"):
            other[key] = value
            continue
        if action.choices is not None and value is not None and value not in action.choices:
            parser.error(f"--config {path}: {key}={value!r} is not one of {list(action.choices)}")
        flags[action.dest] = value
    return flags, other


def apply_config_file(parser: argparse.ArgumentParser, argv=None):
    """If ``argv`` has ``--config FILE``, make its values for ``parser``'s flags the parser's defaults (the
    command line still wins). Returns (FILE, its other keys), or (None, {}) without ``--config``."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return None, {}
    flags, other = read_config_file(known.config, parser)
    parser.set_defaults(**flags)
    return known.config, other
