"""What a run's data reduction is, in words: the method's name (as logs and reports give it) and the one line both
trainers print at start-up with the settings that take effect (defaults filled in)."""
from __future__ import annotations

from dataclasses import fields
from typing import Optional

from .config import AdonisConfig, ReduceConfig

NAMES = {"sb": "Selective Backprop", "stale-sb": "Stale-SB", "composer-sb": "Composer SB", "infobatch": "InfoBatch",
         "random-keep": "random-keep", "rs2": "RS2", "ssp": "SSP", "rpc": "RPC", "rpd": "RPD"}
# ADONIS parameters always shown (symbol, field); every other field only when it is off its default
_ADONIS_SHOWN = (("η", "eta"), ("θ", "theta"), ("α", "alpha"), ("σ", "sigma"), ("ω", "omega"), ("l", "history"),
                 ("bins", "bins"))


def method_name(cfg: ReduceConfig) -> str:
    """The method that runs: ``full``, ``adonis``, ``ids``, ``ids+adonis``, ``sb``, ``rpd+adonis`` … (the labels
    ``datareduce report`` reads from a run record)."""
    parts = (["ids"] if cfg.ids is not None else []) + ([cfg.method] if cfg.method != "full" else []) + \
            (["adonis"] if cfg.adonis is not None else [])
    return "+".join(parts) or "full"


def _g(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _adonis(a: AdonisConfig, rho) -> str:
    symbols = [(sym, name) for sym, name in _ADONIS_SHOWN if not (name == "alpha" and a.prune is not None)]
    text = ("ADONIS, prune mode: " if a.mode == "prune" else "ADONIS ")
    text += " ".join(f"{sym}={_g(getattr(a, name))}" for sym, name in symbols)
    text += f" ρ={a.rho if a.rho is not None else rho if rho is not None else 'the batch size'}"
    default = AdonisConfig()
    shown = {name for _, name in _ADONIS_SHOWN} | {"rho", "seed", "mode"}
    variants = []
    for f in fields(a):
        value = getattr(a, f.name)
        if f.name in shown or value == getattr(default, f.name):
            continue
        variants.append(f.name.replace("_", "-") if value is True else f"{f.name}={_g(value)}")
    return text + (f" ({', '.join(variants)})" if variants else "")


def _extractor(cfg: ReduceConfig) -> str:
    e = cfg.embed
    size = f" at {e.image_size} px" if e.image_size else ""
    return f"extractor {e.extractor}{size}" + (f" (weights {e.weights})" if e.weights else "")


def reduce_line(cfg: ReduceConfig, rho=None, kept: Optional[str] = None) -> str:
    """``datareduce: <method and settings>``, e.g. ``datareduce: ADONIS η=3 θ=0.12 α=0.3 σ=1 ω=0 l=512
    bins=sturges ρ=32 (seed 0)``. ``rho``: the batch size ADONIS accumulates to when ``--adonis-rho`` is unset;
    ``kept``: what an offline subset kept, when known."""
    parts = []
    if cfg.ids is not None:
        i = cfg.ids
        if i.manifest:
            parts.append(f"IDS subset from {i.manifest}")
        else:
            parts.append(f"IDS α={_g(i.alpha)} {i.mode}" + (f" → hard from epoch {i.gamma}" if i.gamma is not None
                                                            else "")
                         + (f" K={i.prototypes}" if i.prototypes != 1 else "") + f", {_extractor(cfg)}")
    m = cfg.method
    if m in ("ssp", "rpc", "rpd"):
        parts.append(f"{NAMES[m]} α={_g(cfg.offline.alpha)}" + (f", {_extractor(cfg)}" if m == "ssp" else ""))
    elif m in ("sb", "stale-sb"):
        parts.append(f"{NAMES[m]} β={_g(cfg.sb.beta)} history {cfg.sb.history} η={cfg.sb_eta}")
    elif m == "composer-sb":
        c = cfg.composer
        parts.append(f"Composer SB keep {_g(c.keep)} from {_g(c.start)} to {_g(c.end)} of training, every "
                     f"{c.interrupt}-th batch in full")
    elif m == "infobatch":
        parts.append(f"InfoBatch r={_g(cfg.infobatch.ratio)} δ={_g(cfg.infobatch.delta)}")
    elif m == "random-keep":
        parts.append(f"random-keep {_g(cfg.random_keep.keep)} of each batch (control)")
    elif m == "rs2":
        parts.append(f"RS2 {_g(cfg.rs2.fraction)} of the training set per epoch")
    if cfg.adonis is not None:
        parts.append(_adonis(cfg.adonis, rho))
    text = " + ".join(parts) if parts else "full data (no data reduction)"
    if kept:
        text += f"; {kept}"
    if cfg.load_all_samples and (cfg.adonis is not None or m in ("sb", "stale-sb", "random-keep")):
        text += "; every sample loaded (--load-all-samples)"
    return f"datareduce: {text}" + (f" (seed {cfg.seed})" if parts else "")
