"""Bad input fails fast, with a clear message, before anything is written."""
import importlib.util
import subprocess
import sys

import pytest
import torch

from test_classify_helpers import REPO, SCRIPT, env, run
from datareduce import manifest as manifest_mod
from datareduce.datasets import DigitsDataset


@pytest.fixture(scope="module")
def classify():
    spec = importlib.util.spec_from_file_location("classify_script_errors", REPO / "trainers" / "classify.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fails(classify, argv, exc, match, out):
    args = classify.parse_args([*map(str, argv), "--output-dir", str(out), "--epochs", "1"])
    with pytest.raises(exc, match=match):
        classify.main(args)
    assert not out.exists(), "a failed start must not leave an output folder behind"


def test_unknown_model(classify, tmp_path):
    _fails(classify, ["--model", "resnet9000"], ValueError, "unknown model 'resnet9000'", tmp_path / "o")


def test_missing_data_path(classify, tmp_path):
    _fails(classify, ["--data-path", tmp_path / "nope"], FileNotFoundError, "does not exist", tmp_path / "o")


def test_folder_without_a_dataset(classify, tmp_path):
    (tmp_path / "data" / "train" / "cat").mkdir(parents=True)
    _fails(classify, ["--data-path", tmp_path / "data"], FileNotFoundError, "no dataset found", tmp_path / "o")


@pytest.mark.parametrize("flags,match", [
    (["--ids-alpha", "1.5"], "alpha=1.5 is out of range"),
    (["--ids-alpha", "0"], "alpha=0.0 is out of range"),
    (["--adonis-alpha", "0"], "alpha=0.0 is out of range"),
    (["--reduce", "rpd", "--reduce-alpha", "2"], "alpha=2.0 is out of range"),
    (["--adonis-theta", "1.2"], "theta=1.2 is out of range"),
])
def test_parameters_out_of_range(classify, tmp_path, flags, match):
    _fails(classify, flags, ValueError, match, tmp_path / "o")


def test_manifest_from_another_dataset(classify, tmp_path, cifar10_small):
    keys = DigitsDataset(True).sample_keys()
    path = tmp_path / "digits-manifest.json"
    manifest_mod.write(path, manifest_mod.make(keys, [manifest_mod.subset(range(100), keys)], "rpd", {}))
    _fails(classify, ["--data-path", cifar10_small, "--ids-manifest", path], manifest_mod.ManifestMismatch,
           "another dataset", tmp_path / "o")
    _fails(classify, ["--ids-manifest", tmp_path / "missing.json"], FileNotFoundError, "does not exist",
           tmp_path / "o")


def test_extractor_weights_not_on_disk(classify, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    cache = tmp_path / "cache"
    common = ["--ids-alpha", "0.8", "--ids-cache-dir", cache]
    _fails(classify, [*common, "--ids-extractor", "resnet18", "--ids-weights", tmp_path / "w.pth"],
           FileNotFoundError, "w.pth", tmp_path / "o")
    _fails(classify, [*common, "--ids-extractor", "resnet18", "--ids-weights", "IMAGENET1K_V1"],
           FileNotFoundError, "not on disk.*Nothing is downloaded", tmp_path / "o")
    _fails(classify, ["--reduce", "ssp", "--ids-cache-dir", cache, "--ids-weights", tmp_path / "lite0.pth"],
           FileNotFoundError, "lite0.pth", tmp_path / "o")
    assert not cache.exists() or not any(cache.rglob("*.npy"))


def test_model_weights_and_checkpoint_not_on_disk(classify, tmp_path):
    _fails(classify, ["--weights", tmp_path / "w.pth"], FileNotFoundError, "not found", tmp_path / "o")
    _fails(classify, ["--resume", tmp_path / "checkpoint.pth"], FileNotFoundError, "no such checkpoint",
           tmp_path / "o")


def test_incompatible_methods(classify, tmp_path):
    _fails(classify, ["--reduce", "infobatch", "--ids-alpha", "0.8"], ValueError, "not supported", tmp_path / "o")
    _fails(classify, ["--reduce", "sb", "--adonis-eta", "3"], ValueError, "use one of them", tmp_path / "o")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu(classify, tmp_path):
    _fails(classify, ["--device", "cuda"], ValueError, "CUDA is not available", tmp_path / "o")


@pytest.mark.parametrize("flags,message", [
    (["--model", "resnet9000"], "unknown model 'resnet9000'"),
    (["--reduce", "sb", "--adonis-eta", "3"], "--reduce sb and ADONIS both select online: use one of them"),
])
def test_command_line_reports_the_error(tmp_path, flags, message):
    proc = run([*flags, "--output-dir", tmp_path / "o"], check=False, timeout=60)
    assert proc.returncode == 2
    assert f"classify.py: error: {message}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_an_internal_error_keeps_its_traceback(tmp_path):
    """A ValueError from inside the trainer (a bug injected into a step that runs after the input is checked) is not
    passed off as bad input: Python prints its traceback and exits with 1."""
    program = ("import runpy, sys\n"
               "from datareduce import host_support\n"
               "def broken(cfg, host):\n"
               "    raise ValueError('injected bug')\n"
               "host_support.check_supported = broken\n"
               f"sys.argv = [{str(SCRIPT)!r}, *sys.argv[1:]]\n"
               f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", program, "--output-dir", str(tmp_path / "o"), "--epochs", "1"],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback (most recent call last)" in proc.stderr and "ValueError: injected bug" in proc.stderr
    assert "classify.py: error" not in proc.stderr
