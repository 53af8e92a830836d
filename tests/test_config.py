"""One config round trip: a config class per method family, validated once, its flags generated from its fields
(``--<PREFIX>-<field>``), and ``ReduceConfig.to_dict`` / ``from_dict`` giving back an equal config."""
import argparse
import json

import pytest

from datareduce._validate import UsageError
from datareduce.config import (AdonisConfig, ComposerSBConfig, EmbedConfig, IDSConfig, InfoBatchConfig, OfflineConfig,
                               RandomKeepConfig, ReduceConfig, RS2Config, SBConfig)
from datareduce.flags import add_reduce_arguments, config_from_args, resumable_flags

# every family off its defaults (method "full": a baseline's parameters are kept whichever method runs)
EVERY_FAMILY = ReduceConfig(
    ids=IDSConfig(alpha=0.6, mode="hard", gamma=4, prototypes=2, manifest="m.json", seed=7),
    adonis=AdonisConfig(eta=3, theta=0.2, clip="clamp", prune=0.5, prune_pool="dense", rho=16, seed=7),
    embed=EmbedConfig(extractor="resnet18", weights="w.pth", image_size=64, cache_dir="/tmp/c"),
    offline=OfflineConfig(alpha=0.5), sb=SBConfig(beta=3.0, history=256, eta=2),
    composer=ComposerSBConfig(keep=0.25, start=0.1, end=0.7, interrupt=3), infobatch=InfoBatchConfig(0.3, 0.5),
    random_keep=RandomKeepConfig(0.4), rs2=RS2Config(0.25), load_all_samples=True, seed=7)

ARGV = ["--ids-alpha", "0.6", "--ids-mode", "hard", "--ids-gamma", "4", "--ids-prototypes", "2", "--ids-manifest",
        "m.json", "--adonis-eta", "3", "--adonis-theta", "0.2", "--adonis-clip", "clamp", "--adonis-prune", "0.5",
        "--adonis-prune-pool", "dense", "--adonis-rho", "16", "--ids-extractor", "resnet18", "--ids-weights",
        "w.pth", "--ids-image-size", "64", "--ids-cache-dir", "/tmp/c", "--reduce-alpha", "0.5", "--sb-beta", "3",
        "--sb-history", "256", "--sb-eta", "2", "--composer-keep", "0.25", "--composer-start", "0.1",
        "--composer-end", "0.7", "--composer-interrupt", "3", "--infobatch-ratio", "0.3", "--infobatch-delta", "0.5",
        "--random-keep", "0.4", "--rs2-fraction", "0.25", "--load-all-samples", "--seed", "7"]


def _parser():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=None)
    return add_reduce_arguments(p)


def test_every_family_round_trips_through_a_json_dict():
    d = json.loads(json.dumps(EVERY_FAMILY.to_dict()))
    assert d["sb"] == {"beta": 3.0, "history": 256, "eta": 2} and d["random_keep"] == {"keep": 0.4}
    assert ReduceConfig.from_dict(d) == EVERY_FAMILY
    assert ReduceConfig.from_dict(ReduceConfig().to_dict()) == ReduceConfig()


def test_the_flags_set_every_field_of_every_family():
    """The generated flags map onto the fields: the command line above gives exactly the config above."""
    assert config_from_args(_parser().parse_args(ARGV)) == EVERY_FAMILY


def test_unknown_keys_are_refused_by_name():
    d = EVERY_FAMILY.to_dict()
    with pytest.raises(UsageError, match=r"unknown data-reduction setting\(s\) adonis_eta, sb_beta$"):
        ReduceConfig.from_dict({**d, "adonis_eta": 3, "sb_beta": 2})
    with pytest.raises(UsageError, match=r"setting\(s\) sb\.staleness$"):
        ReduceConfig.from_dict({**d, "sb": {**d["sb"], "staleness": 2}})


@pytest.mark.parametrize("make,message", [
    (lambda: SBConfig(beta=0), "--sb-beta=0 is out of range: allowed (0, inf)"),
    (lambda: SBConfig(eta=0), "--sb-eta=0 is out of range: allowed [1, inf)"),
    (lambda: RS2Config(fraction=2.0), "--rs2-fraction=2.0 is out of range: allowed (0, 1]"),
    (lambda: RandomKeepConfig(keep=0), "--random-keep=0 is out of range: allowed (0, 1]"),
    (lambda: OfflineConfig(alpha=1.5), "--reduce-alpha=1.5 is out of range: allowed (0, 1]"),
    (lambda: InfoBatchConfig(ratio=1.0), "--infobatch-ratio=1.0 is out of range: allowed [0, 1)"),
    (lambda: ComposerSBConfig(start=0.8, end=0.5), "--composer-end=0.5 must not be before --composer-start=0.8"),
    (lambda: AdonisConfig(history=1.5), "--adonis-history must be an integer, got 1.5"),
    (lambda: AdonisConfig(clip="cut"), "--adonis-clip='cut' is not allowed: choose one of 'drop', 'clamp'"),
    (lambda: IDSConfig(alpha=0), "--ids-alpha=0 is out of range: allowed (0, 1]"),
    (lambda: ReduceConfig.from_dict({"sb": {"beta": -1.0}}), "--sb-beta=-1.0 is out of range"),
])
def test_a_bad_value_names_its_flag_and_the_allowed_range(make, message):
    with pytest.raises(UsageError) as err:
        make()
    assert str(err.value).startswith(message)


def test_eta_and_the_history_lengths_are_the_parameters_a_resume_may_change():
    assert resumable_flags() == {"adonis_eta", "adonis_history", "sb_eta", "sb_history"}


def test_a_resume_honours_eta_and_history_of_a_method_in_use_and_refuses_every_other_change():
    """The core's decision every host makes at resume (datareduce.flags.resume_changes / check_resume), on the
    settings the run logged (ReduceConfig.describe) and the ones given now."""
    from datareduce.flags import GIVE_FLAGS, check_resume, resume_changes

    def d(*flags):
        return config_from_args(add_reduce_arguments(argparse.ArgumentParser()).parse_args(list(flags))).describe()

    run = d("--adonis-eta", "3", "--adonis-history", "256")
    assert resume_changes(run, d("--adonis-eta", "1", "--adonis-history", "128")) == (
        {"--adonis-eta": (3, 1), "--adonis-history": (256, 128)}, [])
    assert resume_changes(run, d("--adonis-eta", "3", "--adonis-history", "256", "--adonis-alpha", "0.5")) == (
        {}, ["--adonis-alpha 0.3 → 0.5"])
    assert resume_changes(run, d()) == ({}, ["--adonis on → off"])  # one line for a method switched off
    assert resume_changes(d("--reduce", "sb"), d("--reduce", "rs2"))[1] == ["--reduce sb → rs2"]
    assert resume_changes(d(), d("--sb-eta", "2")) == ({}, [])  # a parameter of a method the run does not use
    assert resume_changes(d(), d("--adonis-eta", "2"), given={"adonis_eta"}) == ({}, ["--adonis-eta unset → 2"])
    # neither the seed (the host's) nor where the embeddings are cached is compared
    ids = config_from_args(add_reduce_arguments(argparse.ArgumentParser()).parse_args(["--ids-alpha", "0.5"]),
                           seed=1).describe()
    assert resume_changes({**ids, "seed": 2, "embed": {**ids["embed"], "cache_dir": "/elsewhere"}}, ids) == ({}, [])
    assert check_resume(None, run, "resume=x") == {}  # a run that saved no settings: nothing to compare
    with pytest.raises(UsageError, match=r"^resume=x: the run was started with other settings \(--adonis-alpha "
                                         r"0.3 → 0.5\); a resumed run continues with its own: give the flags the run "
                                         r"was started with, or start a new run \(another name=\) to change them$"):
        check_resume(run, d("--adonis-eta", "1", "--adonis-history", "256", "--adonis-alpha", "0.5"), "resume=x",
                     GIVE_FLAGS, "another name=")
