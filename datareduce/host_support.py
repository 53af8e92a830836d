"""What a host's training loop can run, and the one-line refusal of the rest.

Each host (a trainer or a patched upstream script) declares a :class:`Host`: the ``--reduce`` methods wired into
its loop and what its training step gives — one class per sample, per-sample loss weights, the training forward's
per-sample losses. :func:`check_supported` refuses, before any work, a method or variant that needs what the host
lacks, in one line naming the flag, why, and what to use or drop instead (a
:class:`~datareduce._validate.UsageError`). The rules are the same on every host; only the declarations differ.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ._validate import UsageError
from .config import METHODS, ReduceConfig


@dataclass(frozen=True)
class Host:
    """A training loop's capabilities. ``name`` as a user knows it ("YOLOv5's train.py"); ``methods`` the
    ``--reduce`` methods its loop runs; ``why_not`` for the others, why and what to use instead (a default names
    ``elsewhere``, where they run)."""

    name: str
    methods: tuple = METHODS
    one_class_per_sample: bool = True
    loss_weights: bool = True
    train_losses: bool = True
    why_not: dict = field(default_factory=dict)
    elsewhere: str = "trainers/classify.py"


def check_supported(cfg: ReduceConfig, host: Host) -> None:
    """Raise :class:`UsageError` for the first thing in ``cfg`` that ``host`` cannot run."""
    if cfg.method not in host.methods:
        why = host.why_not.get(cfg.method, f"its training step is not wired into {host.name}: use {host.elsewhere}")
        raise UsageError(f"--reduce {cfg.method} is not available in {host.name}: {why}")
    adonis = cfg.adonis
    if adonis is not None and adonis.balance and not host.one_class_per_sample:
        raise UsageError(f"--adonis-balance caps each class, and a sample of {host.name} has no single class: drop it "
                         "(trainers/classify.py runs it for classification)")
    if adonis is not None and adonis.rescale and not host.loss_weights:
        raise UsageError(f"--adonis-rescale weights each kept sample's loss, which {host.name} does not take: drop "
                         "it, or use trainers/classify.py")
    if adonis is not None and adonis.reuse_train_loss and not host.train_losses:
        raise UsageError(f"--adonis-reuse-train-loss needs the training step's per-sample losses, which {host.name} "
                         "does not hand back: drop it, or use trainers/yolo_train.py or trainers/classify.py")
    if cfg.method in ("infobatch", "rs2") and cfg.ids is not None:
        raise UsageError(f"--reduce {cfg.method} draws from the whole training set each epoch; combining it with IDS "
                         "is not supported (use one of them)")
