"""Configuration objects for a data-reduction run: the one hop between flags (``flags.py``) and the algorithms.

One frozen dataclass per method family, held by :class:`ReduceConfig`. Each field says what its flag needs
(:func:`param`: help text, choices, allowed range), and the flag is always ``--<PREFIX>-<field>`` (``PREFIX`` a
class attribute), so ``flags.py`` generates every flag from the fields, and a bad value fails on construction
with its flag, the value and the allowed range. ``ReduceConfig.to_dict`` / ``from_dict`` round-trip a config.
"""
from __future__ import annotations

import functools
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Optional

from ._validate import UsageError, check_choice, check_number
from .adonis import BIN_RULES, CAP_MODES, CLIP_MODES, PRUNE_POOLS, AdonisSelector
from .composer_sb import ComposerSBSelector
from .ids import MODES
from .random_keep import RandomKeepSelector
from .selective_backprop import SelectiveBackpropSelector

ADONIS_MODES = ("paper", "prune")
# The prune mode's settings (README, "ADONIS on the long protocol"): ADONIS's histogram decides what is typical, a
# random share of the typical (dense-bin) samples is left out of each batch and the rest reweighted, the rare
# losses are always trained, each training forward refreshes the loss cache, and the last 1/8 of the epochs
# train on everything.
PRUNE_MODE = {"eta": 3, "prune": 0.5, "prune_pool": "dense", "rescale": True, "reuse_train_loss": True}
PRUNE_MODE_ANNEAL = 0.125  # share of the epochs at the end trained on every sample

OFFLINE = ("ssp", "rpc", "rpd")
ONLINE = ("sb", "stale-sb", "composer-sb", "infobatch", "random-keep", "rs2")
METHODS = ("full",) + ONLINE + OFFLINE
# the ReduceConfig field holding each baseline's parameters
FAMILY_OF = {"ssp": "offline", "rpc": "offline", "rpd": "offline", "sb": "sb", "stale-sb": "sb",
             "composer-sb": "composer", "infobatch": "infobatch", "random-keep": "random_keep", "rs2": "rs2"}


def param(default, help=None, *, choices=None, resumable=False, **bounds):
    """A config field. ``help``: its flag's help text (None: no flag, the host sets it, e.g. the seed);
    ``choices`` or ``bounds`` (:func:`check_number`'s keywords): its allowed values; ``resumable``: a run
    resumed with another value uses the new one (the selector state a checkpoint restores holds for any)."""
    return field(default=default, metadata={"help": help, "choices": choices, "bounds": bounds,
                                            "resumable": resumable})


@functools.cache
def _types(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {name: next((a for a in typing.get_args(t) if a is not type(None)), t) for name, t in hints.items()}


def field_type(cls, name: str) -> type:
    """The type of field ``name`` of config class ``cls``, without ``Optional``."""
    return _types(cls)[name]


def flag_dest(cls, name: str) -> str:
    """The argparse dest of field ``name``'s flag: ``<PREFIX>_<name>``."""
    return f"{cls.PREFIX}_{name}" if cls.PREFIX else name


def flag_of(cls, name: str) -> str:
    """Field ``name``'s flag: ``--<PREFIX>-<name>``, dashes for underscores."""
    return "--" + flag_dest(cls, name).replace("_", "-")


def flag_fields(cls) -> list:
    """The fields of ``cls`` that are flags (those with help text)."""
    return [f for f in fields(cls) if f.metadata.get("help")]


def _check_fields(cfg) -> None:
    """Validate each field of ``cfg`` against its declared choices or range; errors name the field's flag."""
    cls = type(cfg)
    for f in fields(cfg):
        value, meta = getattr(cfg, f.name), f.metadata
        if value is None or not meta:
            continue
        name, typ = flag_of(cls, f.name) if meta["help"] else f.name, field_type(cls, f.name)
        if meta["choices"] is not None:
            check_choice(name, value, meta["choices"])
        elif typ is bool and not isinstance(value, bool):
            raise UsageError(f"{name} must be true or false, got {value!r}")
        elif typ in (int, float):
            check_number(name, value, integer=typ is int, **meta["bounds"])


@dataclass(frozen=True)
class AdonisConfig:
    """ADONIS parameters (paper Table A2 and Appendix B), flags ``--adonis-<field>``. ``rho`` None = the
    loader's batch size."""

    PREFIX = "adonis"
    history: int = param(512, "length l of the loss history ring buffer", low=2, resumable=True)
    bins: str = param("sturges", "bin-count rule: " + ", ".join(BIN_RULES), choices=BIN_RULES)
    sigma: float = param(1.0, "history values beyond mean ± σ·std are clipped from the histogram", low=0,
                         low_open=True)
    theta: float = param(0.12, "PMF threshold: keep samples in histogram bins with PMF > θ (0.1-0.7 usable)", low=0,
                         high=1, high_open=True)
    alpha: float = param(0.3, "at most ⌈α·n⌉ of a forward batch's candidates are kept, drawn at random", low=0,
                         high=1, low_open=True)
    eta: int = param(1, "epochs a scored loss is reused before re-scoring (paper η)", low=1, resumable=True)
    omega: int = param(0, "warm-up: epochs i ≤ ω (counted from 0) train on every sample, as Algorithm 1 line 11; "
                          "0 trains epoch 0 in full, -1 selects from the first batch", low=-1)
    rho: Optional[int] = param(None, "training batch size that kept samples are accumulated to (default: the batch "
                                     "size)", low=1)
    # the paper's open readings (Figure 3 caption; Appendix B)
    clip: str = param("drop", "history values beyond mean ± σ·std: drop them (never candidates) or clamp them to "
                              "the edge (high losses land in the top bin)", choices=CLIP_MODES)
    cap: str = param("batch", "what α caps: batch = at most ⌈α·n⌉ of a forward batch, candidates = "
                              "⌈α·|candidates|⌉, none = keep every candidate", choices=CAP_MODES)
    seed: int = param(0)
    # variants; the defaults are the paper's algorithm
    balance: bool = param(False, "variant: cap each class at ⌈α·n_c⌉ of its candidates (class-balanced "
                                 "selection)")
    floor: float = param(0.0, "variant: keep a uniform random ⌈floor·n⌉ of each batch first, inside the α budget",
                         low=0, high=1)
    rescale: bool = param(False, "variant: weight kept samples by 1 / their stratum's keep rate (unbiased loss "
                                 "estimate)")
    anneal: int = param(0, "variant: train the last N epochs on every sample", low=0)
    decay: Optional[float] = param(None, "variant: recency-weighted histogram, weight decay^(age in batches) "
                                         "(default: off)", low=0, high=1, low_open=True, high_open=True)
    prune: Optional[float] = param(None, "variant: keep every sample except a random share P of the pool "
                                         "(--adonis-prune-pool); with --adonis-rescale the kept pool samples weigh "
                                         "1/(1-P) (default: off)", low=0, high=1, low_open=True, high_open=True)
    prune_pool: str = param("learned", "variant: which samples --adonis-prune draws from: learned = dense bins below "
                                       "the mean loss, dense = every dense bin (only the sparse bins are always "
                                       "trained)", choices=PRUNE_POOLS)
    reuse_train_loss: bool = param(False, "variant: the training forward's losses refresh the loss cache, so a "
                                          "trained sample needs no scoring forward for η epochs (paper §5.2: "
                                          "compute each loss once)")
    mode: str = param("paper", "paper: Algorithm 1 with the paper's values (Table A2); prune: ADONIS's histogram "
                               "prunes half of the typical samples of each batch, reweights the rest, always trains "
                               "the rare ones, reuses training losses and trains the last 1/8 of the epochs in "
                               "full. Other --adonis-* flags override either", choices=ADONIS_MODES)

    def __post_init__(self):
        _check_fields(self)
        self.selector(epochs=max(self.anneal, 1))  # the combinations (floor ≤ α, prune without cap …)

    @classmethod
    def from_mode(cls, mode: str = "paper", epochs: Optional[int] = None, train_losses: bool = True,
                  sample_weights: bool = True, **given) -> "AdonisConfig":
        """The config of ``mode`` with the fields in ``given`` (what the user passed) on top: ``paper`` is
        Algorithm 1 with Table A2's values; ``prune`` starts from :data:`PRUNE_MODE` and anneals the
        last 1/8 of ``epochs``. A host whose training step cannot hand back per-sample losses
        (``train_losses=False``) scores with a forward pass instead of reusing them; one that cannot weight
        each sample's loss (``sample_weights=False``) trains the kept samples unweighted."""
        check_choice("--adonis-mode", mode, ADONIS_MODES)
        values = {}
        if mode == "prune":
            if epochs is None:
                raise UsageError("--adonis-mode prune trains the last 1/8 of the epochs on every sample: "
                                 "it needs the run's number of epochs")
            values = dict(PRUNE_MODE, anneal=max(1, round(PRUNE_MODE_ANNEAL * epochs)))
            values["reuse_train_loss"] &= train_losses
            values["rescale"] &= sample_weights
        values.update(given)
        return cls(mode=mode, **values)

    def selector(self, rank: int = 0, epochs: Optional[int] = None) -> AdonisSelector:
        """A fresh selector; each DDP rank draws with its own seed (seed + rank). ``epochs``: the run's total
        (needed by the ``anneal`` variant)."""
        return AdonisSelector(history=self.history, bins=self.bins, sigma=self.sigma, theta=self.theta,
                              alpha=self.alpha, eta=self.eta, omega=self.omega, seed=self.seed + rank,
                              clip=self.clip, cap=self.cap,
                              balance=self.balance, floor=self.floor, rescale=self.rescale, anneal=self.anneal,
                              epochs=epochs if self.anneal else None, decay=self.decay,
                              prune=self.prune, prune_pool=self.prune_pool)


@dataclass(frozen=True)
class EmbedConfig:
    """Which feature extractor embeds the samples for IDS and SSP, and where embeddings are cached (flags
    ``--ids-<field>``).

    ``image_size`` defaults to 96 px: efficientnet-lite0 then embeds CIFAR-10's 50,000 images in under 5 minutes
    on a 2-core CPU (measured with bench/embed_speed.py; 224 px, its native size, takes 10-20 minutes there).
    ``None`` uses the extractor's native size. The default does not depend on the device, so the same data and
    seed give the same manifest on any machine.
    """

    PREFIX = "ids"
    extractor: str = param("efficientnet-lite0", "feature extractor: efficientnet-lite0 (pretrained, ships "
                                                 "offline), a torchvision model name, or a checkpoint file")
    weights: Optional[str] = param(None, "local weights file for --ids-extractor, or a torchvision weights name "
                                         "found in the torch hub cache (never downloaded)")
    image_size: Optional[int] = param(96, "input size for the extractor (224 is efficientnet-lite0's native size, "
                                          "better features but ~5x slower on a CPU)", low=8)
    cache_dir: Optional[str] = param(None, "where embeddings are cached (default: ~/.cache/datareduce)")

    def __post_init__(self):
        _check_fields(self)


@dataclass(frozen=True)
class IDSConfig:
    """IDS parameters (paper §3.2), flags ``--ids-<field>``: keep ⌈α·L⌉ per class, easy first, the hard subset
    from epoch ``gamma`` on."""

    PREFIX = "ids"
    alpha: float = param(0.8, "fraction kept per class", low=0, high=1, low_open=True)
    mode: str = param("easy", "easy: nearest the class centroid first; hard: farthest first", choices=MODES)
    gamma: Optional[int] = param(None, "epoch to switch from the easy to the hard subset (paper: 180 CIFAR-10, 120 "
                                       "CIFAR-100, 14 ImageNet, 60 COCO; default: no switch)", low=0)
    prototypes: int = param(1, "K-means centroids per class", low=1)
    manifest: Optional[str] = param(None, "use the subset of a manifest written earlier")
    seed: int = param(0)

    def __post_init__(self):
        _check_fields(self)


@dataclass(frozen=True)
class OfflineConfig:
    """The offline baselines SSP, RPC and RPD (flag ``--reduce-alpha``): the kept fraction."""

    PREFIX = "reduce"
    alpha: float = param(0.8, "kept fraction for ssp / rpc / rpd", low=0, high=1, low_open=True)

    def __post_init__(self):
        _check_fields(self)


@dataclass(frozen=True)
class SBConfig:
    """Selective Backprop and Stale-SB (Jiang et al., 2019), flags ``--sb-<field>``: keep probability
    CDF(loss)^β over the last ``history`` losses, a scored loss reused for ``eta`` epochs (η, as ADONIS's)."""

    PREFIX = "sb"
    beta: float = param(2.0, "SB: keep probability CDF(loss)^β", low=0, low_open=True)
    history: int = param(1024, "SB: loss history length", low=2, resumable=True)
    eta: Optional[int] = param(None, "SB: epochs a scored loss is reused before re-scoring (η; default: 1 for sb, "
                                     "2 for stale-sb)", low=1, resumable=True)

    def __post_init__(self):
        _check_fields(self)


@dataclass(frozen=True)
class ComposerSBConfig:
    """Composer's Selective Backprop, flags ``--composer-<field>``: a fixed kept fraction of each batch while
    training progress is in [start, end), every ``interrupt``-th batch in full."""

    PREFIX = "composer"
    keep: float = param(0.5, "Composer SB: kept fraction", low=0, high=1, low_open=True)
    start: float = param(0.5, "Composer SB: start, fraction of training", low=0, high=1)
    end: float = param(0.9, "Composer SB: end, fraction of training", low=0, high=1)
    interrupt: int = param(2, "Composer SB: every n-th batch trained in full (0: none)", low=0)

    def __post_init__(self):
        _check_fields(self)
        if self.end < self.start:
            raise UsageError(f"--composer-end={self.end!r} must not be before --composer-start={self.start!r}")


@dataclass(frozen=True)
class InfoBatchConfig:
    """InfoBatch (Qin et al., 2024), flags ``--infobatch-<field>``."""

    PREFIX = "infobatch"
    ratio: float = param(0.5, "InfoBatch: pruned fraction r of the well-learned samples", low=0, high=1,
                         high_open=True)
    delta: float = param(0.875, "InfoBatch: prune during the first δ of the epochs", low=0, high=1)

    def __post_init__(self):
        _check_fields(self)


@dataclass(frozen=True)
class RandomKeepConfig:
    """The random-keep control (flag ``--random-keep``): the kept fraction of each batch."""

    PREFIX = "random"
    keep: float = param(0.3, "random-keep control: kept fraction of each batch (ADONIS's α)", low=0, high=1,
                        low_open=True)

    def __post_init__(self):
        _check_fields(self)


@dataclass(frozen=True)
class RS2Config:
    """RS2 (flag ``--rs2-fraction``): the fraction of the training set trained each epoch."""

    PREFIX = "rs2"
    fraction: float = param(0.5, "RS2: fraction of the training set trained each epoch, a fresh random subset drawn "
                                 "without replacement across epochs", low=0, high=1, low_open=True)

    def __post_init__(self):
        _check_fields(self)


@dataclass(frozen=True)
class ReduceConfig:
    """Everything a trainer needs to know about data reduction: the method and its parameters.

    ``method`` is ``full`` or one baseline (``sb``, ``stale-sb``, ``composer-sb``, ``infobatch``, ``random-keep``,
    ``rs2``, ``ssp``, ``rpc``, ``rpd``), whose parameters are in the field :data:`FAMILY_OF` names; ``ids`` and
    ``adonis`` switch on the paper's two methods (they combine: IDS chooses the subset, ADONIS selects inside it).
    """

    PREFIX = ""
    method: str = "full"
    ids: Optional[IDSConfig] = None
    adonis: Optional[AdonisConfig] = None
    embed: EmbedConfig = EmbedConfig()
    offline: OfflineConfig = OfflineConfig()
    sb: SBConfig = SBConfig()
    composer: ComposerSBConfig = ComposerSBConfig()
    infobatch: InfoBatchConfig = InfoBatchConfig()
    random_keep: RandomKeepConfig = RandomKeepConfig()
    rs2: RS2Config = RS2Config()
    load_all_samples: bool = param(False, "load every sample even in epochs whose selection can be made from cached "
                                          "losses alone (η-reuse epochs, random-keep): the slower path, for "
                                          "comparison (classification trainer)")
    seed: int = param(0)

    def __post_init__(self):
        check_choice("--reduce", self.method, METHODS)
        _check_fields(self)
        if self.ids is not None and self.method in OFFLINE:
            raise UsageError(f"--reduce {self.method} and IDS both choose an offline subset: use one of them")
        if self.adonis is not None and self.method in ONLINE:
            raise UsageError(f"--reduce {self.method} and ADONIS both select online: use one of them")

    @property
    def sb_eta(self) -> int:
        """SB's η: ``sb.eta``, else 1 for sb and 2 for stale-sb."""
        if self.sb.eta is not None:
            return self.sb.eta
        return 2 if self.method == "stale-sb" else 1

    def online_selector(self, rank: int = 0, epochs: Optional[int] = None):
        """The per-batch selector of this run (ADONIS, SB, Stale-SB, Composer-SB, random-keep), or None."""
        if self.adonis is not None:
            return self.adonis.selector(rank, epochs=epochs)
        if self.method == "random-keep":
            return RandomKeepSelector(self.random_keep.keep, seed=self.seed + rank)
        if self.method in ("sb", "stale-sb"):
            return SelectiveBackpropSelector(beta=self.sb.beta, history=self.sb.history, eta=self.sb_eta,
                                             seed=self.seed + rank)
        if self.method == "composer-sb":
            return ComposerSBSelector(**asdict(self.composer), seed=self.seed + rank)
        return None

    def to_dict(self) -> dict:
        """Every field, nested by family, JSON-ready (the inverse of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ReduceConfig":
        """The config :meth:`to_dict` wrote, validated again (unknown keys are an error, naming them)."""
        return _from_dict(cls, d, "")

    def describe(self) -> dict:
        """A JSON-ready dict of every parameter that matters to this run (for logs and summaries): the method,
        the seed, and the families the run uses, with the values that take effect."""
        out = {"method": self.method, "seed": self.seed}
        if self.ids is not None:
            out["ids"] = asdict(self.ids)
        if self.adonis is not None:
            out["adonis"] = asdict(self.adonis)
        if self.ids is not None or self.method == "ssp":
            out["embed"] = asdict(self.embed)
        family = FAMILY_OF.get(self.method)
        if family is not None:
            out[family] = asdict(getattr(self, family))
        if family == "sb":
            out["sb"]["eta"] = self.sb_eta
        if self.load_all_samples:
            out["load_all_samples"] = True
        return out


@functools.cache
def families() -> dict:
    """ReduceConfig's fields that hold a config class: field name → class (``ids`` → :class:`IDSConfig` …)."""
    return {name: t for name, t in _types(ReduceConfig).items() if is_dataclass(t)}


def _from_dict(cls, d, where: str):
    if not isinstance(d, dict):
        raise UsageError(f"data-reduction setting {where.rstrip('.') or 'the config'}: expected a mapping, got {d!r}")
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise UsageError(f"unknown data-reduction setting(s) {', '.join(where + k for k in unknown)}")
    values = {}
    for name, value in d.items():
        typ = field_type(cls, name)
        values[name] = _from_dict(typ, value, f"{where}{name}.") if is_dataclass(typ) and value is not None else value
    return cls(**values)
