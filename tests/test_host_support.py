"""Every method on every host, or a refusal a user can act on: the host × method matrix, checked at start-up.

Each method of ``config.METHODS`` and each ADONIS variant goes through each host's own path from flags to a
running reduction, up to where the first batch would be drawn: the flags become the host's config, the host's
refusal check runs, and where the host accepts, what it builds must be that method (a classification reducer of
its name, the yolov5 hooks active with the right selection), never a silent full run. Where the host refuses, the
one line must name the flag and say what to use or drop instead. ``REFUSED`` is the matrix's every refusal: a new
method is accepted or refused by each host on purpose, or this test fails.
"""
import argparse
import importlib.util
import re
from pathlib import Path

import pytest
import torchvision

from datareduce._validate import UsageError
from datareduce.config import METHODS, OFFLINE, ONLINE
from datareduce.flags import add_reduce_arguments, config_from_args
from datareduce.host_support import check_supported
from datareduce.integrations import vision_reference as vr
from datareduce.integrations import yolov5 as y5
from datareduce.integrations.classification.reducer import FullReducer
from datareduce.integrations.classification import reducer_choice
from datareduce.integrations.classification.reducer_choice import build_reducer

REPO = Path(__file__).resolve().parents[1]

VARIANTS = {m: ["--reduce", m] for m in METHODS}
VARIANTS.update({
    "adonis": ["--adonis-mode", "paper"],
    "adonis-prune-mode": ["--adonis-mode", "prune"],
    "adonis-balance": ["--adonis-balance"],
    "adonis-rescale": ["--adonis-rescale"],
    "adonis-reuse-train-loss": ["--adonis-reuse-train-loss"],
    "adonis-floor": ["--adonis-floor", "0.1"],
    "adonis-anneal": ["--adonis-anneal", "1"],
    "adonis-decay": ["--adonis-decay", "0.9"],
    "adonis-prune": ["--adonis-prune", "0.5"],
    "ids": ["--ids-alpha", "0.8"],
    "ids+adonis": ["--ids-alpha", "0.8", "--adonis-eta", "2"],
    "ids+infobatch": ["--ids-alpha", "0.8", "--reduce", "infobatch"],
    "ids+rs2": ["--ids-alpha", "0.8", "--reduce", "rs2"],
})
HOSTS = ("classify", "vision", "ultralytics", "yolov5")
REFUSED = {
    ("classify", "ids+infobatch"), ("classify", "ids+rs2"), ("vision", "ids+infobatch"), ("vision", "ids+rs2"),
    ("ultralytics", "rpc"), ("ultralytics", "adonis-balance"), ("ultralytics", "adonis-rescale"),
    ("ultralytics", "ids+infobatch"), ("ultralytics", "ids+rs2"),
    ("yolov5", "rpc"), ("yolov5", "infobatch"), ("yolov5", "adonis-balance"), ("yolov5", "adonis-rescale"),
    ("yolov5", "adonis-reuse-train-loss"), ("yolov5", "ids+infobatch"), ("yolov5", "ids+rs2"),
}
EPOCHS = 16


def _classify_parser():
    spec = importlib.util.spec_from_file_location("classify_script_support", REPO / "trainers" / "classify.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_args_parser()


@pytest.fixture(scope="module")
def train_set(cifar10_small):
    return torchvision.datasets.ImageFolder(str(cifar10_small / "train"))


def expected_name(cfg) -> str:
    return "adonis" if cfg.adonis is not None else ("ids" if cfg.ids is not None else cfg.method)


def check_reducer(cfg, dataset) -> None:
    """The classification loop's reducer for ``cfg`` (trainers/classify.py and the vision hooks build it alike)."""
    reducer = build_reducer(cfg, None, 8, EPOCHS, dataset)
    assert reducer.name == expected_name(cfg)
    if cfg.adonis is not None or cfg.method in ONLINE:
        assert type(reducer) is not FullReducer  # a method of its own, not the full-data loop


def start(host: str, flags: list, tmp_path, dataset) -> None:
    """Take ``host`` from ``flags`` to its first batch: raises UsageError where the host refuses them."""
    if host == "classify":
        args = _classify_parser().parse_args(["--epochs", str(EPOCHS), *flags])
        cfg = config_from_args(args, seed=0)
        check_supported(cfg, reducer_choice.HOST)
        check_reducer(cfg, dataset)
    elif host == "vision":
        p = add_reduce_arguments(argparse.ArgumentParser())
        p.add_argument("--epochs", type=int, default=EPOCHS)
        args = p.parse_args(flags)
        cfg = config_from_args(args, seed=0, train_losses=True)
        vr.check_supported(cfg, args)
        check_reducer(cfg, dataset)
    elif host == "ultralytics":
        ul = pytest.importorskip("datareduce.integrations.ultralytics")
        ns = add_reduce_arguments(argparse.ArgumentParser()).parse_args(flags)
        defaults = vars(add_reduce_arguments(argparse.ArgumentParser()).parse_args([]))
        given = {k: v for k, v in vars(ns).items() if v != defaults[k]}
        cfg = ul.TrainerSettings.from_flags(seed=0, epochs=EPOCHS, **given).reduce
        check_supported(cfg, ul.HOST)
        assert cfg.method in ul.HOST.methods
    else:
        p = argparse.ArgumentParser()
        p.add_argument("--epochs", type=int, default=EPOCHS)
        y5.add_arguments(p)
        reduce = y5.setup(p.parse_args(flags), tmp_path)
        cfg = reduce.cfg
        assert reduce.active == (expected_name(cfg) != "full")  # the hooks are the identity only for a full run
        assert reduce.online == (cfg.adonis is not None or cfg.method in ("sb", "stale-sb", "random-keep",
                                                                          "composer-sb"))
        assert reduce.offline == (cfg.ids is not None or cfg.method in OFFLINE)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_each_host_runs_the_method_or_refuses_it_in_one_actionable_line(host, variant, tmp_path, train_set):
    flags = VARIANTS[variant]
    if (host, variant) not in REFUSED:
        start(host, flags, tmp_path, train_set)
        return
    with pytest.raises(UsageError) as err:
        start(host, flags, tmp_path, train_set)
    message = str(err.value)
    assert "\n" not in message
    named = f"--reduce {flags[flags.index('--reduce') + 1]}" if "--reduce" in flags else flags[0]
    assert named in message, message  # the flag the refusal is about
    assert re.search(r"\b(use|drop)\b", message), message
