"""Keep Ultralytics off the network: its online check, font download, telemetry and AMP-check weights.

Ultralytics reads ``YOLO_OFFLINE`` and ``YOLO_CONFIG_DIR`` when it is imported, downloads ``Arial.ttf`` on every
detection dataset check unless a font already sits in its config dir, and on CUDA downloads ``yolo26n.pt`` to
check AMP. :func:`ensure_offline` sets all of that up and :func:`no_amp_download` guards the AMP check. Nothing
here runs at import: ``trainers/yolo_train.py`` calls :func:`ensure_offline` before it imports Ultralytics, and
``DataReduceDetectionTrainer`` calls both when it is built and set up, so no shell setup is needed.

It also holds the Ultralytics release checks: :func:`check_ultralytics` (before Ultralytics is imported: the
``[yolo]`` extra is installed, at a release of the tested range) and :func:`check_private_overrides` (when the
trainer is built: the private methods it overrides are still there, with the parameters it was written for).
"""
from __future__ import annotations

import contextlib
import inspect
import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Optional

from ..extras import MissingExtra, available, install_hint, missing_message
from ..paths import cache_root  # noqa: F401  (re-exported for the trainer)

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")  # the two names Ultralytics' check_font asks for
# The Ultralytics releases the trainer is tested with (pyproject.toml's [yolo] extra says the same; a test checks).
# DataReduceDetectionTrainer overrides private BaseTrainer methods as they read in ULTRALYTICS_MIN: they are listed in
# datareduce/integrations/ultralytics.py, PRIVATE_OVERRIDES.
ULTRALYTICS_MIN, ULTRALYTICS_BELOW = "8.4.190", "8.5"
ULTRALYTICS_RANGE = f">={ULTRALYTICS_MIN},<{ULTRALYTICS_BELOW}"
UNTESTED_ENV = "DATAREDUCE_UNTESTED_ULTRALYTICS"  # =1: an untested release only warns


def _release(version: str) -> Optional[tuple]:
    """The leading release numbers of a version string (``8.4.190rc1`` -> (8, 4, 190)); None if there are none."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(version))
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def ultralytics_version_problem(version: str) -> Optional[str]:
    """None when Ultralytics ``version`` lies in the tested range, else the one-line reason it is refused."""
    release = _release(version)
    low, high = _release(ULTRALYTICS_MIN), _release(ULTRALYTICS_BELOW)
    pad = lambda v: v + (0,) * (4 - len(v))  # noqa: E731
    if release is not None and pad(low) <= pad(release) < pad(high):
        return None
    return (f"ultralytics {version} is installed, but datareduce's YOLO trainer is tested with ultralytics"
            f"{ULTRALYTICS_RANGE} only (it overrides private DetectionTrainer methods): {install_hint('yolo')} "
            f"installs a tested release (or set {UNTESTED_ENV}=1 to try this one anyway)")


def installed_version() -> str:
    """The installed Ultralytics distribution's version (a source checkout: its ``__version__``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ultralytics")
    except PackageNotFoundError:  # importable but not installed as a distribution
        import ultralytics

        return getattr(ultralytics, "__version__", "unknown")


def check_ultralytics(version: Optional[str] = None) -> None:
    """Before Ultralytics is imported: refuse a missing one (:class:`MissingExtra`, naming the ``[yolo]`` extra)
    or a release outside the tested range (also :class:`MissingExtra`; with ``DATAREDUCE_UNTESTED_ULTRALYTICS=1``
    only a warning). ``version`` defaults to the installed distribution's."""
    if version is None:
        if not available("ultralytics"):
            raise MissingExtra(missing_message("the YOLO trainer", "Ultralytics (AGPL-3.0)", "yolo"), "yolo")
        version = installed_version()
    problem = ultralytics_version_problem(version)
    if problem is None:
        return
    if os.environ.get(UNTESTED_ENV, "") not in ("", "0"):
        warnings.warn(problem, RuntimeWarning, stacklevel=2)
        return
    raise MissingExtra(problem, "yolo")


def _parameters(method) -> list:
    """A method's parameters as compared across releases: names, kinds and defaults (annotations aside)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(method).parameters.values()]


def override_problems(ours: type, upstream: type, names) -> list:
    """Which of the private ``upstream`` methods ``names`` that ``ours`` overrides are gone from ``upstream`` or
    take other parameters than our override: one ``"name: why"`` string each, empty when all still match."""
    problems = []
    for name in names:
        if not callable(getattr(upstream, name, None)):
            problems.append(f"{name}: missing")
        elif _parameters(getattr(ours, name)) != _parameters(getattr(upstream, name)):
            theirs, mine = inspect.signature(getattr(upstream, name)), inspect.signature(getattr(ours, name))
            problems.append(f"{name}: now {theirs}, ours {mine}")
    return problems


def check_private_overrides(ours: type, upstream: type, names, version: Optional[str] = None) -> None:
    """When the trainer is built: refuse, in one line naming the installed release, the tested range and the
    methods, an Ultralytics whose private ``upstream`` methods that ``ours`` overrides (``names``) are missing or
    take other parameters (:class:`MissingExtra`; ``DATAREDUCE_UNTESTED_ULTRALYTICS`` does not lift this: the
    overrides would not be called as written). ``version`` defaults to the installed one."""
    problems = override_problems(ours, upstream, names)
    if problems:
        raise MissingExtra(
            f"ultralytics {version or installed_version()} is installed, but datareduce's YOLO trainer is tested "
            f"with ultralytics{ULTRALYTICS_RANGE} and overrides private {upstream.__name__} methods that this "
            f"release lacks or has changed ({'; '.join(problems)}); {install_hint('yolo')} installs a tested release",
            "yolo")


def default_config_dir() -> Path:
    """Where our Ultralytics settings and fonts live unless ``YOLO_CONFIG_DIR`` says otherwise."""
    return cache_root() / "ultralytics-config"


def ensure_offline() -> Path:
    """Make every later Ultralytics call offline; return the Ultralytics config dir in use.

    Sets ``YOLO_OFFLINE=1`` and ``YOLO_AUTOINSTALL=0``, and ``YOLO_CONFIG_DIR`` when unset (see
    :func:`default_config_dir`), and places matplotlib's DejaVuSans as ``Arial.ttf`` there. If Ultralytics was
    imported before this call, its import-time ``ONLINE`` flags are switched off and the font goes into the
    config dir it already chose. The environment variables also reach Ultralytics' DDP subprocesses.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(default_config_dir()))
    config_dir = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics"
    if "ultralytics.utils" in sys.modules:  # imported already: patch the flags it computed at import
        from ultralytics import utils
        from ultralytics.utils import checks, events

        utils.ONLINE = checks.ONLINE = events.ONLINE = False
        events.events.enabled = False
        config_dir = utils.USER_CONFIG_DIR
    _place_font(config_dir)
    return config_dir


def _place_font(config_dir: Path) -> None:
    """Copy a local TTF under the names Ultralytics would otherwise download."""
    from matplotlib import font_manager

    source = Path(font_manager.findfont("DejaVu Sans", fallback_to_default=True))
    config_dir.mkdir(parents=True, exist_ok=True)
    for name in FONT_NAMES:
        target = config_dir / name
        if not target.exists():
            tmp = target.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)  # atomic: parallel ranks or test workers never see half a font


@contextlib.contextmanager
def no_amp_download():
    """Inside, Ultralytics' AMP check runs only when its check weights are already on disk, else AMP stays on.

    Upstream ``check_amp`` downloads ``yolo26n.pt`` on CUDA; offline we skip the comparison (and say so) rather
    than let it try. The patch is undone on exit.
    """
    from ultralytics.engine import trainer as trainer_module
    from ultralytics.utils import LOGGER, WEIGHTS_DIR

    stock = trainer_module.check_amp

    def check_amp(model):
        if next(model.parameters()).device.type == "cuda" and not (WEIGHTS_DIR / "yolo26n.pt").is_file():
            LOGGER.warning(f"AMP: check skipped offline ({WEIGHTS_DIR / 'yolo26n.pt'} not found); keeping amp=True. "
                           "Pass amp=False if you see NaN losses.")
            return True
        return stock(model)

    trainer_module.check_amp = check_amp
    try:
        yield
    finally:
        trainer_module.check_amp = stock
