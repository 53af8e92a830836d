"""patches/: the pinned versions agree everywhere, and — given upstream checkouts — each patch applies and the
patched script trains one tiny CPU epoch with ``--ids-alpha 0.8 --adonis-eta 3``.

Set ``DATAREDUCE_YOLOV5_CHECKOUT`` to an ultralytics/yolov5 checkout and ``DATAREDUCE_VISION_CHECKOUT`` to a
pytorch/vision checkout (only ``references/classification/`` is needed); without them those tests are skipped.
The checkouts are never modified: each test patches a copy in its temporary folder. YOLOv5 runs offline
(``YOLOv5_AUTOINSTALL=false``, its config dir in the temp folder, no ``.git`` in the copy so its update check is
skipped) and needs its own requirements (pandas, seaborn, gitpython, ultralytics, thop) in this environment.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PATCHES = REPO / "patches"
APPLY = PATCHES / "apply.sh"
YOLOV5_ENV, VISION_ENV = "DATAREDUCE_YOLOV5_CHECKOUT", "DATAREDUCE_VISION_CHECKOUT"
TIMEOUT = int(os.environ.get("DATAREDUCE_UPSTREAM_TIMEOUT", "1800"))


def pinned() -> dict:
    """The commits and file blobs apply.sh pins."""
    text = APPLY.read_text()
    return {k: re.search(rf"^{k}=([0-9a-f]{{40}})", text, re.M).group(1)
            for k in ("YOLOV5_COMMIT", "YOLOV5_BLOB", "VISION_COMMIT", "VISION_BLOB")}


# ------------------------------------------------------------------------------------- always (no upstream needed)
def test_patches_apply_sh_and_readme_name_the_same_versions():
    pins = pinned()
    readme = (PATCHES / "README.md").read_text()
    for name, blob_key, commit_key in (("yolov5-train.patch", "YOLOV5_BLOB", "YOLOV5_COMMIT"),
                                       ("vision-classification.patch", "VISION_BLOB", "VISION_COMMIT")):
        patch = (PATCHES / name).read_text()
        index = re.search(r"^index ([0-9a-f]+)\.\.", patch, re.M).group(1)
        assert pins[blob_key].startswith(index), f"{name} was made from another version of the file"
        assert pins[commit_key] in readme and name in readme
        assert "datareduce.integrations" in patch  # the patch calls into the package, nothing more
        added = [line for line in patch.splitlines() if line.startswith("+") and not line.startswith("+++")]
        assert len(added) <= 15, f"{name} is no longer thin ({len(added)} added lines)"


def test_apply_sh_refuses_a_folder_that_is_no_upstream(tmp_path):
    assert subprocess.run(["bash", "-n", str(APPLY)]).returncode == 0
    out = subprocess.run(["bash", str(APPLY), str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2 and "neither a yolov5 checkout" in out.stderr


# ------------------------------------------------------------------------------------- with upstream checkouts
def checkout(env: str) -> Path:
    value = os.environ.get(env)
    if not value:
        pytest.skip(f"{env} is not set: point it at an upstream checkout to apply the patch to a copy and run the "
                    "patched script (see patches/README.md)")
    path = Path(value).expanduser()
    if not path.is_dir():
        pytest.fail(f"{env}={value} is not a directory")
    return path


def copy_upstream(src: Path, dst: Path, sub: str = "") -> Path:
    """A copy of the checkout's working tree (only ``sub`` if given), without ``.git`` and run outputs."""
    shutil.copytree(src / sub, dst / sub, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", "runs", "__pycache__", "*.pt"))
    return dst


def apply_patch(root: Path, *flags) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(APPLY), *flags, str(root)], capture_output=True, text=True)


def env_for(tmp_path: Path) -> dict:
    """This checkout's datareduce first on the path; YOLOv5 and Ultralytics kept offline and out of $HOME."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cfg = tmp_path / "yolov5-config"
    cfg.mkdir(exist_ok=True)
    try:  # YOLOv5 downloads Arial.ttf into its config dir for plots unless a font is there
        import matplotlib

        shutil.copy(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", cfg / "Arial.ttf")
    except (ImportError, OSError):
        pass
    env.update(YOLOv5_AUTOINSTALL="false", YOLOV5_CONFIG_DIR=str(cfg), YOLO_AUTOINSTALL="false", YOLO_OFFLINE="1",
               YOLO_CONFIG_DIR=str(tmp_path / "ultralytics-config"), DATAREDUCE_CACHE=str(tmp_path / "cache"),
               MPLBACKEND="Agg")
    return env


def run(cmd, cwd, env) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    text = out.stdout + out.stderr
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n{text[-6000:]}"
    return text


IDS_FAST = ["--ids-extractor", "resnet18", "--ids-weights", "random", "--ids-image-size", "64"]


@pytest.fixture
def yolov5_copy(tmp_path):
    root = copy_upstream(checkout(YOLOV5_ENV), tmp_path / "yolov5")
    check = apply_patch(root, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    if "already applied" not in check.stdout:
        if "is the pinned version" in check.stdout:
            assert pinned()["YOLOV5_BLOB"] in check.stdout
        applied = apply_patch(root)
        assert applied.returncode == 0 and "applied:" in applied.stdout, applied.stdout + applied.stderr
    assert apply_patch(root).stdout.count("already applied") == 1
    return root


@pytest.fixture
def coco128_copy(coco128_root, tmp_path):
    """COCO128 in the temp folder (hard links where possible): YOLOv5 writes label caches next to the labels."""
    dst = tmp_path / "coco128"
    for split in ("train", "val"):
        shutil.copytree(coco128_root / "images" / split, dst / "images" / split, copy_function=_link_or_copy)
        shutil.copytree(coco128_root / "labels" / split, dst / "labels" / split,
                        ignore=shutil.ignore_patterns("*.cache"))
    val = sorted((dst / "images" / "val").iterdir())[:16]
    (dst / "val16.txt").write_text("".join(f"{p}\n" for p in val))
    names = re.search(r"^names:.*", (coco128_root / "data.yaml").read_text(), re.M | re.S).group(0)
    (tmp_path / "coco128.yaml").write_text(f"path: {dst}\ntrain: images/train\nval: val16.txt\n{names}\n")
    return tmp_path / "coco128.yaml"


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def test_yolov5_patched_train_runs_one_epoch_with_ids_and_adonis(yolov5_copy, coco128_copy, tmp_path):
    out = run([sys.executable, str(yolov5_copy / "train.py"), "--data", str(coco128_copy), "--weights", "",
               "--cfg", "yolov5n.yaml", "--img", "128", "--batch-size", "16", "--epochs", "1", "--workers", "0",
               "--device", "cpu", "--project", str(tmp_path / "runs"), "--name", "run", "--exist-ok", "--noplots",
               "--noautoanchor", "--ids-alpha", "0.8", "--adonis-eta", "3", *IDS_FAST],
              cwd=tmp_path, env=env_for(tmp_path))
    assert "datareduce: ids keeps [103] of 128 training images" in out
    assert re.search(r"datareduce: epoch 0 ids\+adonis kept \d+/103 images", out), out[-3000:]
    run_dir = tmp_path / "runs" / "run"
    log = [json.loads(x) for x in (run_dir / "datareduce" / "log.jsonl").read_text().splitlines()]
    assert [r["type"] for r in log] == ["run", "ids", "epoch", "summary"]
    epoch = log[2]
    assert epoch["forward_samples"] == 103 and epoch["samples_scored"] == 103 and epoch["map50_95"] is not None
    assert 0 < epoch["samples_backprop"] == epoch["samples_selected"] < 103
    assert np.load(run_dir / "datareduce" / "selection_counts.npy").sum() == epoch["samples_backprop"]
    assert len((run_dir / "datareduce" / "train-0-easy.txt").read_text().splitlines()) == 103
    assert (run_dir / "weights" / "last.pt").is_file()


PER_IMAGE_SCRIPT = r"""
import json, sys
import torch, yaml
sys.path.insert(0, ".")
from models.yolo import Model
from utils.loss import ComputeLoss
from datareduce.integrations.yolov5 import make_score_fn, per_image_loss

torch.manual_seed(0)
hyp = yaml.safe_load(open("data/hyps/hyp.scratch-low.yaml"))
model = Model("models/yolov5n.yaml", ch=3, nc=80)
model.hyp, model.nc = dict(hyp), 80
loss = ComputeLoss(model)
obj_hyp = dict(hyp, box=0.0, cls=0.0)
model.hyp = obj_hyp
obj_loss = ComputeLoss(model)
model.hyp = dict(hyp)
one = torch.tensor([[0, 0, 0.5, 0.5, 0.3, 0.4], [0, 17, 0.3, 0.6, 0.1, 0.2]])
same = torch.cat([one.clone().index_fill_(1, torch.tensor([0]), float(i)) for i in range(4)])
img = torch.rand(1, 3, 128, 128)
model.train()
with torch.no_grad():
    preds = model(img.repeat(4, 1, 1, 1))
    identical = [float(per_image_loss(loss, preds, same).sum()), float(loss(preds, same)[0][0])]
    imgs = torch.rand(4, 3, 128, 128)
    mixed = torch.cat([one, same[4:6]])  # images 0 and 2 have boxes, 1 and 3 are background
    preds = model(imgs)
    objectness = [float(per_image_loss(obj_loss, preds, mixed).sum()), float(obj_loss(preds, mixed)[0][0])]
    model.eval()
    k_alone = float(loss(model(imgs[2:3])[1], one)[0][0])
    k_in_batch = float(per_image_loss(loss, model(imgs)[1], mixed)[2])
model.train()
bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
before = [m.running_mean.clone() for m in bn]
scores = make_score_fn(model, loss, "cpu")(((imgs * 255).to(torch.uint8), mixed, ("a",) * 4, (None,) * 4))
unchanged = all(torch.equal(m.running_mean, b) for m, b in zip(bn, before))
print("RESULT " + json.dumps({"identical": identical, "objectness": objectness, "alone": [k_alone, k_in_batch],
                              "scores": scores.tolist(), "bn_unchanged": unchanged}))
"""


def test_yolov5_own_compute_loss_gives_consistent_per_image_losses(yolov5_copy, tmp_path):
    out = run([sys.executable, "-c", PER_IMAGE_SCRIPT], cwd=yolov5_copy, env=env_for(tmp_path))
    res = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    assert res["identical"][0] == pytest.approx(res["identical"][1], rel=1e-4)
    assert res["objectness"][0] == pytest.approx(res["objectness"][1], rel=1e-4)
    assert res["alone"][0] == pytest.approx(res["alone"][1], rel=1e-4)
    assert len(res["scores"]) == 4 and all(s == s and s > 0 for s in res["scores"]) and res["bn_unchanged"]


@pytest.fixture
def vision_copy(tmp_path):
    root = copy_upstream(checkout(VISION_ENV), tmp_path / "vision", "references/classification")
    applied = apply_patch(root)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "applied:" in applied.stdout or "already applied" in applied.stdout
    return root / "references" / "classification"


def test_vision_patched_train_runs_one_epoch_with_ids_and_adonis(vision_copy, cifar10_small, tmp_path):
    data = tmp_path / "cifar"
    data.mkdir()
    (data / "train").symlink_to(cifar10_small / "train")
    (data / "val").symlink_to(cifar10_small / "test")
    out_dir = tmp_path / "out"
    out = run([sys.executable, str(vision_copy / "train.py"), "--data-path", str(data), "--model", "resnet18",
               "--device", "cpu", "-b", "16", "--epochs", "1", "-j", "0", "--lr", "0.05", "--train-crop-size", "32",
               "--val-resize-size", "32", "--val-crop-size", "32", "--output-dir", str(out_dir),
               "--ids-alpha", "0.8", "--adonis-eta", "3", "--adonis-omega", "-1", *IDS_FAST], cwd=tmp_path, env=env_for(tmp_path))
    assert "datareduce: ids keeps [320] of 400 training images" in out
    assert re.search(r"datareduce: epoch 0 ids\+adonis kept \d+/320 samples", out), out[-3000:]
    assert "Acc@1" in out and (out_dir / "checkpoint.pth").is_file()
    log = [json.loads(x) for x in (out_dir / "datareduce" / "log.jsonl").read_text().splitlines()]
    assert [r["type"] for r in log] == ["run", "ids", "epoch", "summary"] and log[2]["samples_scored"] == 320
    acc1 = float(re.findall(r"Acc@1 ([0-9.]+)", out)[0])
    assert log[2]["top1"] == pytest.approx(acc1, abs=1e-3)  # what the reference's evaluate returned
    assert np.load(out_dir / "datareduce" / "selection_counts.npy").sum() == log[2]["samples_backprop"]
