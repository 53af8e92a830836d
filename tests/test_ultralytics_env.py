"""ensure_offline() switches every Ultralytics network path off (the end-to-end proof, with sockets made fatal,
is tests/test_yolo_train.py::test_no_network_call_is_attempted)."""
import os
from types import SimpleNamespace

import pytest

from datareduce.integrations.ultralytics_env import ensure_offline, no_amp_download

ensure_offline()
from ultralytics.engine import trainer  # noqa: E402
from ultralytics.utils import USER_CONFIG_DIR, WEIGHTS_DIR, checks, events  # noqa: E402


def test_flags_font_and_environment():
    assert ensure_offline() == USER_CONFIG_DIR  # again, now that Ultralytics is imported: patches its flags
    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["YOLO_AUTOINSTALL"] == "0"
    assert not checks.ONLINE and not events.events.enabled
    assert checks.check_font("Arial.ttf") == USER_CONFIG_DIR / "Arial.ttf"  # found locally: no download
    assert (USER_CONFIG_DIR / "Arial.Unicode.ttf").stat().st_size > 0


def test_amp_check_never_downloads_its_weights():
    if (WEIGHTS_DIR / "yolo26n.pt").is_file():
        pytest.skip("the AMP check weights are on disk: upstream's check runs as is")
    on_cuda = SimpleNamespace(parameters=lambda: iter([SimpleNamespace(device=SimpleNamespace(type="cuda"))]))
    stock = trainer.check_amp
    with no_amp_download():
        assert trainer.check_amp(on_cuda) is True  # upstream's offline answer, without trying the download
    assert trainer.check_amp is stock
