"""Keep Ultralytics off the network: its online check, font download, telemetry and AMP-check weights.

Ultralytics reads ``YOLO_OFFLINE`` and ``YOLO_CONFIG_DIR`` when it is imported, downloads ``Arial.ttf`` on every
detection dataset check unless a font already sits in its config dir, and on CUDA downloads ``yolo26n.pt`` to
check AMP. :func:`ensure_offline` sets all of that up; the trainer calls it itself, so no shell setup is needed.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from ..paths import cache_root  # noqa: F401  (re-exported for the trainer)

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")  # the two names Ultralytics' check_font asks for


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
