"""Which reducer a run gets from its config (``--reduce`` / ``--adonis-*``), and what the classification loop runs.

The one place that maps a method to its reducer, so the trainer and the torchvision-reference hooks agree.
"""
from __future__ import annotations

from ...config import ReduceConfig
from ...host_support import Host
from .composer_reducer import ComposerReducer
from .infobatch_reducer import InfoBatchReducer
from .online_reducer import OnlineReducer
from .reducer import FullReducer, Reducer
from .rs2_reducer import RS2Reducer
from .training_set import full_labels

HOST = Host("trainers/classify.py")  # every method and variant: one class per sample, loss weights, training losses


def build_reducer(cfg: ReduceConfig, score_fn, batch_size: int, epochs: int, dataset, rank: int = 0,
                  collate_fn=None, device=None) -> Reducer:
    """The reducer for this run's ``--reduce`` / ``--adonis`` choice (offline methods train as full data).
    ``collate_fn`` and ``device`` (the train loader's) let online selection load samples by index."""
    if cfg.adonis is not None or cfg.method in ("sb", "stale-sb", "random-keep"):
        rho = (cfg.adonis.rho if cfg.adonis is not None else None) or batch_size
        name = "adonis" if cfg.adonis is not None else cfg.method
        reuse = cfg.adonis is not None and cfg.adonis.reuse_train_loss
        return OnlineReducer(cfg.online_selector(rank, epochs=epochs), score_fn, rho, name, full_labels(dataset),
                             batch_size=batch_size, plan=not cfg.load_all_samples, reuse_train_losses=reuse,
                             collate_fn=collate_fn, device=device)
    if cfg.method == "composer-sb":
        return ComposerReducer(cfg.online_selector(rank, epochs=epochs), score_fn, epochs)
    if cfg.method == "infobatch":
        from ...infobatch import InfoBatchPruner

        return InfoBatchReducer(InfoBatchPruner(len(dataset), epochs, ratio=cfg.infobatch.ratio,
                                                delta=cfg.infobatch.delta, seed=cfg.seed))
    if cfg.method == "rs2":
        from ...rs2 import RS2Subsets

        return RS2Reducer(RS2Subsets(len(dataset), cfg.rs2.fraction, seed=cfg.seed))
    red = FullReducer()
    red.name = cfg.method if cfg.ids is None else "ids"
    return red
