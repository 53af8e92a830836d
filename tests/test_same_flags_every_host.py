"""The same flags mean the same thing on every host.

One small configuration (an IDS subset with α = 0.5, embedded by a random-init resnet18 at 32 px, and ADONIS
with η = 2) runs for one epoch through each of the four hosts:

* ``classify``: trainers/classify.py (its real ``main``) on 400 CIFAR-10 images;
* ``vision``: the torchvision-reference hooks, driven as the patched ``train.py`` calls them, on the same images;
* ``ultralytics``: trainers/yolo_train.py's Ultralytics trainer on 24 COCO128 images;
* ``yolov5``: the YOLOv5 ``train.py`` hooks on the same 24 images.

Every host records the same resolved settings and epoch records of one schema (less each host's own metrics),
and two hosts given the same images keep the same IDS subset. A method a host cannot run is refused with the
same one-line message on every host that refuses it.

tests/test_hosts_agree.py compares more selections (RPC, RS2) between pairs of hosts, in longer runs.
"""
import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import RandomSampler

from datareduce import manifest, records, run_files
from datareduce._validate import UsageError
from datareduce.integrations import vision_reference as vr
from datareduce.integrations import yolov5 as y5
from datareduce.integrations.classification.reducer_choice import HOST as CLASSIFY_HOST
from test_hosts_agree import CLASSIFY, IDS, classify, hooks_epochs, same_selection  # noqa: F401 (fixture)
from test_vision_hooks import loader_for, reference_args, small_net, train_set
from test_yolo_train import TINY, coco_small, train_in, yolo_train  # noqa: F401 (fixture)
import test_yolov5_hooks as v5
from datareduce.integrations import ultralytics as ul

FLAGS = ["--ids-alpha", "0.5", *IDS, "--adonis-eta", "2"]
HOSTS = {"classify": CLASSIFY_HOST, "vision": vr.HOST, "ultralytics": ul.HOST, "yolov5": y5.HOST}

# Every epoch record holds these keys: the selection accounting of run_files.EPOCH_KEYS, and what every host's
# session adds for this configuration.
SHARED_EPOCH_KEYS = {"type", *run_files.EPOCH_KEYS, "cumulative_train_time_s", "samples_loaded",
                     "buffered",  # ADONIS: selected samples queued for the next batch of rho
                     "nonfinite_losses",  # ADONIS: the non-finite per-sample losses its selector dropped
                     "subset"}  # IDS: the subset the epoch trained (easy, then hard from γ on)
# ... what both detection hosts add: their metrics, and whether η-reuse was on (off while mosaic is on: a mosaic
# is a new composite each time, datareduce.online.ReuseGate) ...
DETECTION_EPOCH_KEYS = {"map50", "map50_95", "scoring_reuse"}
# ... and each host's own: its metrics, and what only its loop does.
HOST_EPOCH_KEYS = {
    # classify.py's loop evaluates loss and top-5 and schedules the learning rate itself
    "classify": {"top1", "top5", "val_loss", "eval_time_s", "train_loss", "lr", "planned"},
    # the reference's train.py hands the hooks only its top-1
    "vision": {"top1", "planned"},
    "ultralytics": DETECTION_EPOCH_KEYS,
    "yolov5": DETECTION_EPOCH_KEYS,
}
# Only the classification loop plans an epoch from cached losses (the detection hosts' loaders are
# upstream's). Every host that runs an online selection counts the non-finite losses its selector drops.


# ------------------------------------------------------------------------------------------------ the hosts
def run_classify(classify, folder, cifar, *flags):
    """trainers/classify.py, one epoch of resnet20; returns its run folder."""
    classify("--data-path", cifar, *CLASSIFY, "--epochs", "1", *flags, "--ids-cache-dir", folder / "embeddings",
             "--output-dir", folder / "out")
    return folder / "out"


def run_vision_hooks(folder, cifar, *flags):
    """The patched reference's calls: ``setup`` after ``load_data``, one epoch through ``epoch_loader``."""
    dataset = train_set(cifar)
    args = reference_args(folder / "out", *flags, "--ids-cache-dir", str(folder / "embeddings"), epochs=1,
                          batch_size=32)
    sampler = RandomSampler(dataset)
    reduce = vr.setup(args, dataset, sampler)
    hooks_epochs(reduce, loader_for(dataset, args, sampler), small_net(), [0])
    return folder / "out" / run_files.SUBFOLDER


def run_ultralytics(folder, coco, *flags):
    """trainers/yolo_train.py, one epoch of yolov5n at 96 px; returns its run folder and what it trained on."""
    trainer, _ = train_in(folder, f"data={coco}", "name=ultralytics", *flags,
                          "--ids-cache-dir", str(folder / "embeddings"))
    return trainer.save_dir, sorted(os.path.relpath(f, coco) for f in trainer.train_loader.dataset.im_files)


def run_yolov5_hooks(folder, coco, *flags):
    """The patched YOLOv5 train.py's calls: ``setup``, ``train_path`` for the dataloader, one ``epoch`` of a
    small detector and loss in YOLOv5's formats, ``end_epoch`` with validation's results."""
    opt = v5.parse(*flags, "--epochs", "1", "--ids-cache-dir", str(folder / "embeddings"))
    hooks = y5.setup(opt, folder / "out", device="cpu", root=coco)
    kept = Path(hooks.train_path(str(coco / "images" / "train"), 0)).read_text().splitlines()
    loader = v5.ListLoader([v5.load_batch(coco, kept[i:i + 8]) for i in range(0, len(kept), 8)], kept)
    torch.manual_seed(0)
    list(hooks.epoch(loader, 0, 1, v5.TinyDetector(), v5.StandInComputeLoss()))
    hooks.end_epoch(0, v5.RESULTS)
    return folder / "out" / run_files.SUBFOLDER, sorted(os.path.relpath(f, coco) for f in kept)


@pytest.fixture(scope="module")
def runs(classify, cifar10_small, coco_small, tmp_path_factory):  # noqa: F811
    """Each host's run folder after one epoch with :data:`FLAGS` (each host in its own folder of ``tmp``), and
    the images each detection host trained."""
    tmp = tmp_path_factory.mktemp("hosts")
    ultralytics, ultralytics_images = run_ultralytics(tmp / "ultralytics", coco_small, *FLAGS)
    yolov5, yolov5_images = run_yolov5_hooks(tmp / "yolov5", coco_small, *FLAGS)
    folders = {"classify": run_classify(classify, tmp / "classify", cifar10_small, *FLAGS),
               "vision": run_vision_hooks(tmp / "vision", cifar10_small, *FLAGS),
               "ultralytics": ultralytics, "yolov5": yolov5}
    return tmp, folders, {"ultralytics": ultralytics_images, "yolov5": yolov5_images}


def logged(folders, kind):
    """Each host's records of type ``kind``."""
    return {host: [r for r in records.read(folder / records.LOG_NAME) if r["type"] == kind]
            for host, folder in folders.items()}


# ------------------------------------------------------------------------------------------------ the tests
def test_every_host_resolves_the_flags_to_the_same_settings(runs):
    """The ``run`` record's settings: the same values, defaults included, on every host."""
    tmp, folders, _ = runs
    settings = {host: rec["reduce"] for host, (rec,) in logged(folders, "run").items()}
    for host, reduce in settings.items():  # where each host cached its embeddings: the folder the test gave it
        assert reduce["embed"].pop("cache_dir") == str(tmp / host / "embeddings")
    first = settings["classify"]
    assert (first["ids"]["alpha"], first["adonis"]["eta"], first["embed"]["image_size"]) == (0.5, 2, 32)
    for host, reduce in settings.items():
        assert reduce == first, host


def test_every_host_writes_epoch_records_of_one_schema(runs):
    """The epoch records hold the same keys on every host, besides each host's own listed above."""
    _, folders, _ = runs
    epochs = {host: only for host, (only,) in logged(folders, "epoch").items()}
    for host, epoch in epochs.items():
        own = set(epoch) - SHARED_EPOCH_KEYS
        assert own == HOST_EPOCH_KEYS[host], (host, sorted(own ^ HOST_EPOCH_KEYS[host]))
        assert SHARED_EPOCH_KEYS <= set(epoch), (host, sorted(SHARED_EPOCH_KEYS - set(epoch)))
        assert (epoch["method"], epoch["subset"], epoch["epoch"]) == ("ids+adonis", "easy", 0), host
    for a, b in (("classify", "vision"), ("ultralytics", "yolov5")):  # same data: the same training set
        assert epochs[a]["train_samples"] == epochs[b]["train_samples"], (a, b)
    # one rule on both detection hosts, mosaic off on both here (Ultralytics closes it for the last 10 epochs, the
    # only one of this run; the YOLOv5 stand-in loader makes no mosaic): η-reuse on
    assert epochs["ultralytics"]["scoring_reuse"] is epochs["yolov5"]["scoring_reuse"] is True


def test_hosts_given_the_same_images_keep_the_same_subset(runs):
    """IDS on the same images with the same seed and extractor keeps the same ones, whichever host runs it."""
    tmp, folders, trained = runs
    chosen = {host: manifest.read(folder / run_files.MANIFEST_NAME) for host, folder in folders.items()}
    for host, made in chosen.items():  # each host embedded for itself: no host reused another's features
        assert made["extractor"]["cache_dir"] == str(tmp / host / "embeddings")
    assert same_selection(chosen["classify"]) == same_selection(chosen["vision"])
    assert same_selection(chosen["ultralytics"]) == same_selection(chosen["yolov5"])
    assert chosen["classify"]["subsets"][0]["num_kept"] == 200 and chosen["yolov5"]["subsets"][0]["num_kept"] == 12
    kept = sorted(chosen["yolov5"]["subsets"][0]["kept"])
    assert trained["ultralytics"] == trained["yolov5"] == kept  # and both detection hosts trained exactly those


# A flag a host may refuse, and whether a host's declaration says it must.
REFUSABLE = {
    "rpc": (["--reduce", "rpc"], lambda host: "rpc" not in host.methods),
    "infobatch": (["--reduce", "infobatch"], lambda host: "infobatch" not in host.methods),
    "balance": (["--adonis-balance"], lambda host: not host.one_class_per_sample),
    "rescale": (["--adonis-rescale"], lambda host: not host.loss_weights),
    "reuse": (["--adonis-reuse-train-loss"], lambda host: not host.train_losses),
}


def refusal(host, flags, classify, cifar, coco, folder):
    """The UsageError ``host`` raises, before any training, for ``flags``."""
    with pytest.raises(UsageError) as err:
        if host == "classify":
            classify("--data-path", cifar, *CLASSIFY, *flags, "--output-dir", folder)
        elif host == "vision":
            dataset = train_set(cifar)
            vr.setup(reference_args(folder, *flags), dataset, RandomSampler(dataset))
        elif host == "ultralytics":
            yolo_train.train(yolo_train.parse_args([*TINY, f"data={coco}", f"project={folder}", *flags]))
        else:
            y5.setup(v5.parse(*flags), folder)
    return str(err.value)


@pytest.mark.parametrize("case", REFUSABLE)
def test_a_method_a_host_cannot_run_is_refused_alike_everywhere(case, classify, cifar10_small, coco_small,  # noqa: F811
                                                                tmp_path):
    """Each host that cannot run a flag refuses it in the same one line, naming the flag and the host."""
    flags, refuses = REFUSABLE[case]
    refusing = [host for host, declared in HOSTS.items() if refuses(declared)]
    assert refusing, f"no host refuses {flags}: drop the case"
    said = {host: refusal(host, flags, classify, cifar10_small, coco_small, tmp_path / host) for host in refusing}
    for host, message in said.items():
        assert "\n" not in message and message.startswith(flags[0]) and HOSTS[host].name in message, message
    patterns = {message.replace(HOSTS[host].name, "<host>") for host, message in said.items()}
    assert len(patterns) == 1, patterns
