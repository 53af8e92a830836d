"""ensure_offline() switches every Ultralytics network path off (the end-to-end proof, with sockets made fatal,
is tests/test_yolo_train.py::test_no_network_call_is_attempted); importing our Ultralytics glue changes nothing."""
import json
import os
import subprocess
import sys
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


IMPORT_GLUE = """
import json, os, sys
from pathlib import Path
import torchvision.models  # third-party imports first: torch's dynamo sets TORCHINDUCTOR_CACHE_DIR on import
import ultralytics.utils as utils  # and Ultralytics' own import writes its settings file
from ultralytics.engine import trainer
from ultralytics.utils import checks, events

def look():
    config = Path(os.environ["YOLO_CONFIG_DIR"])
    return {"environ": dict(os.environ), "settings": dict(utils.SETTINGS),
            "files": sorted(str(p.relative_to(config)) for p in config.rglob("*")),
            "online": [utils.ONLINE, checks.ONLINE, events.ONLINE, events.events.enabled],
            "check_amp": repr(trainer.check_amp), "modules": "datareduce.integrations.ultralytics" in sys.modules}

before = look()
import datareduce.integrations.ultralytics, datareduce.integrations.ultralytics_data
import datareduce.integrations.ultralytics_env, datareduce.integrations.ultralytics_loss
after = look()
print(json.dumps([before, after], default=str))
"""


def test_importing_the_glue_changes_nothing(tmp_path):
    """A fresh process: no environment variable, Ultralytics setting or file in its config dir, online flag or
    patched function differs after importing the glue (the trainer and the trainer script switch Ultralytics
    offline themselves). YOLO_AUTOINSTALL is left unset on purpose: the trainer would set it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "DATAREDUCE_"))}
    env.update(YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(tmp_path / "config"), HOME=str(tmp_path / "home"),
               DATAREDUCE_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", IMPORT_GLUE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert after.pop("modules") and not before.pop("modules")  # the glue was imported in between
    assert after == before
    assert before["files"] and not (tmp_path / "cache").exists()  # Ultralytics' settings file; nothing of ours
