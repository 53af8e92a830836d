"""`datareduce ids` end to end on real CIFAR-10 images (the 400-image subset), and its bad-input errors."""
import contextlib
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from datareduce import cli, manifest

ALPHA = 0.5
PER_CLASS = 40  # cifar10_small: 40 train images per class


@pytest.fixture(scope="session")
def embed_cache(tmp_path_factory) -> Path:
    """One embedding cache for the whole session (test_report.py reuses it)."""
    return tmp_path_factory.getbasetemp() / "datareduce-embeddings"


def run_ids(capsys, *args):
    code = cli.main(["ids", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def easy(cifar10_small, embed_cache, tmp_path_factory):
    """`datareduce ids` at α 0.5, easy, EfficientNet-Lite0 at 32 px: (exit code, stdout, manifest path)."""
    out = tmp_path_factory.mktemp("ids") / "sub" / "manifest.json"  # the parent folder does not exist yet
    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        code = cli.main(["ids", "--data-path", str(cifar10_small), "--alpha", str(ALPHA), "--mode", "easy",
                         "--extractor", "efficientnet-lite0", "--image-size", "32", "--cache-dir", str(embed_cache),
                         "--out", str(out)])
    return code, buf.getvalue(), err.getvalue(), out


def train_keys(root: Path):
    from datareduce.datasets import IndexedImageFolder

    return IndexedImageFolder(root / "train").sample_keys()


def test_ids_writes_a_manifest_the_trainer_accepts(easy, cifar10_small):
    code, out, err, path = easy
    assert code == 0, err
    m = manifest.read(path)
    keys = train_keys(cifar10_small)
    assert m["method"] == "ids"
    assert m["params"] == {"alpha": ALPHA, "mode": "easy", "gamma": None, "prototypes": 1, "seed": 0}
    ex = m["extractor"]  # the embedding settings and the extractor's key, as every host records them
    assert ex["extractor"] == "efficientnet-lite0" and ex["image_size"] == 32
    assert ex["key"].startswith("extractor/1|efficientnet-lite0|") and "|size=32|" in ex["key"]
    assert m["dataset"] == {"fingerprint": manifest.dataset_fingerprint(keys), "num_samples": 10 * PER_CLASS}
    (sub,) = m["subsets"]
    # ⌈α·L⌉ per class; the prototype is the nearest sample, so in easy mode it is among them already
    assert sub["per_class"] == {name: math.ceil(ALPHA * PER_CLASS) for name in sorted({k.split("/")[0] for k in keys})}
    assert sub["num_kept"] == len(sub["kept"]) == 10 * math.ceil(ALPHA * PER_CLASS)
    # ids are paths relative to the folder of the class folders, and they exist
    assert all((cifar10_small / "train" / k).is_file() for k in sub["kept"])
    # the classification trainer's own check accepts it for this dataset
    from datareduce.datasets import IndexedImageFolder
    from datareduce.integrations.classification.offline_subset import check_manifest

    check_manifest(path, IndexedImageFolder(cifar10_small / "train"))
    # written atomically: no temp file left next to it
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest.json"]
    # the console: the per-class table, the totals and the time spent
    for name in ("airplane", "truck", "all"):
        assert name in out
    assert f"{10 * PER_CLASS}" in out and "Time: embedding" in out and "Manifest:" in out
    assert "Embedding" in err  # the progress bar


def test_gamma_writes_easy_and_hard_subsets_from_the_cache(easy, cifar10_small, embed_cache, tmp_path, capsys):
    out = tmp_path / "gamma.json"
    # DIR/<class>/* layout (the train folder itself) gives the same ids, so the cached embeddings are reused
    code, stdout, err = run_ids(capsys, "--data-path", cifar10_small / "train", "--alpha", ALPHA, "--gamma", 3,
                                "--image-size", 32, "--cache-dir", embed_cache, "--out", out)
    assert code == 0, err
    assert "read from the cache" in stdout
    m = manifest.read(out)
    easy_m = manifest.read(easy[3])
    assert m["dataset"] == easy_m["dataset"]
    first, second = m["subsets"]
    assert (first["from_epoch"], first["mode"], second["from_epoch"], second["mode"]) == (0, "easy", 3, "hard")
    assert first["kept"] == easy_m["subsets"][0]["kept"]
    # hard: the ⌈α·L⌉ farthest plus the prototype (the nearest) in each class
    assert set(second["per_class"].values()) == {math.ceil(ALPHA * PER_CLASS) + 1}
    assert len(set(first["kept"]) & set(second["kept"])) == 10  # only the prototypes are in both
    assert "kept easy (epoch 0+)" in stdout and "kept hard (epoch 3+)" in stdout


@pytest.mark.parametrize("method,expect", [("rpd", 320), ("rpc", 320)])
def test_random_baselines_need_no_extractor(cifar10_small, tmp_path, capsys, method, expect):
    out = tmp_path / f"{method}.json"
    code, stdout, err = run_ids(capsys, "--data-path", cifar10_small, "--method", method, "--alpha", 0.8,
                                "--out", out)
    assert code == 0, err
    m = manifest.read(out)
    assert m["method"] == method and m["extractor"] is None and m["subsets"][0]["num_kept"] == expect
    if method == "rpc":
        assert set(m["subsets"][0]["per_class"].values()) == {32}
    assert "Embedding" not in err


@pytest.mark.parametrize("args,message", [
    (["--alpha", "1.5"], "alpha=1.5 is out of range"),
    (["--alpha", "0"], "alpha=0.0 is out of range"),
    (["--prototypes", "0"], "prototypes=0 is out of range"),
    (["--method", "rpd", "--gamma", "5"], "apply to --method ids only"),
    (["--extractor", "resnet-18"], "unknown feature extractor 'resnet-18'"),
    (["--extractor", "resnet18", "--weights", "/nonexistent/w.pth"], "/nonexistent/w.pth"),
])
def test_bad_input_fails_clearly_and_writes_nothing(cifar10_small, tmp_path, capsys, args, message):
    out = tmp_path / "m.json"
    code, stdout, err = run_ids(capsys, "--data-path", cifar10_small, "--out", out, *args)
    assert code == 2
    assert err.startswith("datareduce: error: ") and message in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_missing_or_empty_data_path(tmp_path, capsys):
    code, _, err = run_ids(capsys, "--data-path", tmp_path / "nope", "--out", tmp_path / "m.json")
    assert code == 2 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_ids(capsys, "--data-path", tmp_path / "empty", "--method", "rpd",
                           "--out", tmp_path / "m.json")
    assert code == 2 and "no ImageFolder dataset" in err
    code, _, err = run_ids(capsys, "--data-path", tmp_path / "empty", "--out", tmp_path)
    assert code == 2 and "is a folder" in err


@pytest.mark.parametrize("command, internal", [
    (["ids", "--data-path", "unused", "--out", "m.json"], "datareduce.ids_command.run"),
    (["report", "unused", "--out", "out"], "datareduce.report.command.load_runs"),
])
def test_an_internal_error_is_not_reported_as_bad_input(monkeypatch, tmp_path, command, internal):
    """A ValueError that is not a UsageError (a bug, injected here) leaves main with its traceback, not exit 2."""
    def broken(*args, **kwargs):
        raise ValueError("injected bug")

    monkeypatch.setattr(internal, broken)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="injected bug") as caught:
        cli.main(command)
    assert type(caught.value) is ValueError


def test_console_script_reports_bad_alpha_with_exit_code_2(cifar10_small, tmp_path):
    """The installed entry point (python -m datareduce.cli is the same main) exits 2 with one clear line."""
    proc = subprocess.run([sys.executable, "-m", "datareduce.cli", "ids", "--data-path", str(cifar10_small),
                           "--alpha", "2", "--out", str(tmp_path / "m.json")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "datareduce: error: alpha=2.0 is out of range: allowed (0, 1]"
    assert json.dumps(proc.stdout) == '""'
