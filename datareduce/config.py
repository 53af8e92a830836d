"""Configuration objects for a data-reduction run: the one hop between flags (``flags.py``) and the algorithms.

Each is a frozen dataclass validated on construction with the same checks as the algorithm it configures,
so a bad ``--adonis-theta`` fails at start-up with the parameter's name, value and allowed range.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from ._validate import UsageError, check_choice, check_number
from .adonis import AdonisSelector
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


@dataclass(frozen=True)
class AdonisConfig:
    """ADONIS parameters (paper Table A2 and Appendix B). ``rho`` None = the loader's batch size."""

    history: int = 512
    bins: str = "sturges"
    sigma: float = 1.0
    theta: float = 0.12
    alpha: float = 0.3
    eta: int = 1
    omega: int = 0
    rho: Optional[int] = None
    clip: str = "drop"
    cap: str = "batch"
    seed: int = 0
    # variants; the defaults are the paper's algorithm
    balance: bool = False
    floor: float = 0.0
    rescale: bool = False
    anneal: int = 0
    decay: Optional[float] = None
    prune: Optional[float] = None
    prune_pool: str = "learned"
    reuse_train_loss: bool = False
    mode: str = "paper"  # which preset the fields started from: "paper" (Algorithm 1) or "prune"

    def __post_init__(self):
        check_choice("adonis mode", self.mode, ADONIS_MODES)
        self.selector(epochs=max(self.anneal, 1))
        if self.rho is not None:
            check_number("rho", self.rho, low=1, integer=True)

    @classmethod
    def from_mode(cls, mode: str = "paper", epochs: Optional[int] = None, train_losses: bool = True,
                  sample_weights: bool = True, **given) -> "AdonisConfig":
        """The config of ``mode`` with the fields in ``given`` (what the user passed) on top: ``paper`` is
        Algorithm 1 with Table A2's values; ``prune`` starts from :data:`PRUNE_MODE` and anneals the
        last 1/8 of ``epochs``. A host whose training step cannot hand back per-sample losses
        (``train_losses=False``) scores with a forward pass instead of reusing them; one that cannot weight
        each sample's loss (``sample_weights=False``) trains the kept samples unweighted."""
        check_choice("adonis mode", mode, ADONIS_MODES)
        fields = {}
        if mode == "prune":
            if epochs is None:
                raise UsageError("--adonis-mode prune trains the last 1/8 of the epochs on every sample: "
                                 "it needs the run's number of epochs")
            fields = dict(PRUNE_MODE, anneal=max(1, round(PRUNE_MODE_ANNEAL * epochs)))
            fields["reuse_train_loss"] &= train_losses
            fields["rescale"] &= sample_weights
        fields.update(given)
        return cls(mode=mode, **fields)

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
    """Which feature extractor embeds the samples for IDS and SSP, and where embeddings are cached.

    ``image_size`` defaults to 96 px: efficientnet-lite0 then embeds CIFAR-10's 50,000 images in under 5 minutes
    on a 2-core CPU (measured with bench/embed_speed.py; 224 px, its native size, takes 10-20 minutes there).
    ``None`` uses the extractor's native size. The default does not depend on the device, so the same data and
    seed give the same manifest on any machine.
    """

    extractor: str = "efficientnet-lite0"
    weights: Optional[str] = None
    image_size: Optional[int] = 96
    cache_dir: Optional[str] = None

    def __post_init__(self):
        if self.image_size is not None:
            check_number("image_size", self.image_size, low=8, integer=True)


@dataclass(frozen=True)
class IDSConfig:
    """IDS parameters (paper §3.2): keep ⌈α·L⌉ per class, easy first, the hard subset from epoch ``gamma`` on."""

    alpha: float = 0.8
    mode: str = "easy"
    gamma: Optional[int] = None
    prototypes: int = 1
    manifest: Optional[str] = None
    seed: int = 0

    def __post_init__(self):
        check_number("ids alpha", self.alpha, low=0, high=1, low_open=True)
        check_choice("ids mode", self.mode, MODES)
        check_number("ids prototypes", self.prototypes, low=1, integer=True)
        if self.gamma is not None:
            check_number("ids gamma", self.gamma, low=0, integer=True)


@dataclass(frozen=True)
class ReduceConfig:
    """Everything a trainer needs to know about data reduction: the method and its parameters.

    ``method`` is ``full`` or one baseline (``sb``, ``stale-sb``, ``composer-sb``, ``infobatch``,
    ``ssp``, ``rpc``, ``rpd``, ``rs2``); ``ids`` and ``adonis`` switch on the paper's two methods (they combine: IDS
    chooses the subset, ADONIS selects inside it).
    """

    method: str = "full"
    ids: Optional[IDSConfig] = None
    adonis: Optional[AdonisConfig] = None
    embed: EmbedConfig = EmbedConfig()
    alpha: float = 0.8  # kept fraction for ssp / rpc / rpd
    sb_beta: float = 2.0
    sb_history: int = 1024
    sb_staleness: Optional[int] = None  # None: 1 for sb, 2 for stale-sb
    composer_keep: float = 0.5
    composer_start: float = 0.5
    composer_end: float = 0.9
    composer_interrupt: int = 2
    infobatch_ratio: float = 0.5
    infobatch_delta: float = 0.875
    random_keep: float = 0.3  # kept fraction per batch for the random-keep control
    rs2_fraction: float = 0.5  # RS2: fraction of the training set trained each epoch
    load_all: bool = False  # online selection: never plan an epoch from cached losses (load every sample)
    seed: int = 0

    def __post_init__(self):
        check_choice("reduce", self.method, METHODS)
        check_number("reduce alpha", self.alpha, low=0, high=1, low_open=True)
        check_number("rs2 fraction", self.rs2_fraction, low=0, high=1, low_open=True)
        if self.ids is not None and self.method in OFFLINE:
            raise UsageError(f"--reduce {self.method} and IDS both choose an offline subset: use one of them")
        if self.adonis is not None and self.method in ONLINE:
            raise UsageError(f"--reduce {self.method} and ADONIS both select online: use one of them")
        if self.adonis is None:
            self.online_selector()  # validates the baseline's parameters (AdonisConfig validates itself)

    @property
    def staleness(self) -> int:
        if self.sb_staleness is not None:
            return self.sb_staleness
        return 2 if self.method == "stale-sb" else 1

    def online_selector(self, rank: int = 0, epochs: Optional[int] = None):
        """The per-batch selector of this run (ADONIS, SB, Stale-SB, Composer-SB, random-keep), or None."""
        if self.adonis is not None:
            return self.adonis.selector(rank, epochs=epochs)
        if self.method == "random-keep":
            return RandomKeepSelector(self.random_keep, seed=self.seed + rank)
        if self.method in ("sb", "stale-sb"):
            return SelectiveBackpropSelector(beta=self.sb_beta, history=self.sb_history,
                                             staleness=self.staleness, seed=self.seed + rank)
        if self.method == "composer-sb":
            return ComposerSBSelector(keep=self.composer_keep, start=self.composer_start, end=self.composer_end,
                                      interrupt=self.composer_interrupt, seed=self.seed + rank)
        return None

    def refuse_train_loss_reuse(self, host: str) -> None:
        """Refuse ``--adonis-reuse-train-loss`` in a ``host`` whose loop does not hand back the training step's
        per-sample losses (both trainers and the torchvision reference's hooks do)."""
        if self.adonis is not None and self.adonis.reuse_train_loss:
            raise UsageError(f"--adonis-reuse-train-loss needs the training step's per-sample losses, which {host} "
                             "does not hand back: use trainers/yolo_train.py or trainers/classify.py")

    def to_dict(self) -> dict:
        """Every field, JSON-ready (the inverse of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ReduceConfig":
        """The config :meth:`to_dict` wrote, validated again (unknown keys are an error, naming them)."""
        d = dict(d)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown data-reduction setting(s) {sorted(unknown)}")
        ids, adonis, embed = d.pop("ids", None), d.pop("adonis", None), d.pop("embed", None)
        return cls(**d, ids=ids and IDSConfig(**ids), adonis=adonis and AdonisConfig(**adonis),
                   embed=EmbedConfig(**embed) if embed else EmbedConfig())

    def describe(self) -> dict:
        """A JSON-ready dict of every parameter that matters to this run (for logs and summaries)."""
        out = {"method": self.method, "seed": self.seed}
        if self.ids is not None:
            out["ids"] = asdict(self.ids)
        if self.adonis is not None:
            out["adonis"] = asdict(self.adonis)
        if self.ids is not None or self.method == "ssp":
            out["embed"] = asdict(self.embed)
        if self.method in OFFLINE:
            out["alpha"] = self.alpha
        if self.load_all:
            out["load_all"] = True
        if self.method in ("sb", "stale-sb"):
            out.update(sb_beta=self.sb_beta, sb_history=self.sb_history, sb_staleness=self.staleness)
        if self.method == "composer-sb":
            out.update(composer_keep=self.composer_keep, composer_start=self.composer_start,
                       composer_end=self.composer_end, composer_interrupt=self.composer_interrupt)
        if self.method == "random-keep":
            out["random_keep"] = self.random_keep
        if self.method == "infobatch":
            out.update(infobatch_ratio=self.infobatch_ratio, infobatch_delta=self.infobatch_delta)
        if self.method == "rs2":
            out["rs2_fraction"] = self.rs2_fraction
        return out
