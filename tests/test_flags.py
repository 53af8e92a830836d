import argparse

import pytest

from datareduce import AdonisSelector, SelectiveBackpropSelector
from datareduce.flags import add_reduce_arguments, config_from_args


def parse(*argv):
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=None)
    add_reduce_arguments(p)
    return config_from_args(p.parse_args(list(argv)))


def test_defaults_are_full_training():
    c = parse()
    assert c.method == "full" and c.ids is None and c.adonis is None and c.online_selector() is None


def test_any_adonis_flag_turns_it_on_with_paper_defaults():
    c = parse("--adonis-eta", "3", "--seed", "7")
    sel = c.online_selector()
    assert isinstance(sel, AdonisSelector)
    assert (sel.eta, sel.theta, sel.alpha, sel.sigma, sel.history_size, sel.bins, sel.seed) == (3, 0.12, 0.3, 1.0, 512, "sturges", 7)


def test_ids_and_adonis_combine():
    c = parse("--ids-alpha", "0.7", "--ids-gamma", "5", "--adonis")
    assert c.ids.alpha == 0.7 and c.ids.gamma == 5 and c.adonis is not None


def test_stale_sb_eta():
    sel = parse("--reduce", "stale-sb").online_selector()
    assert isinstance(sel, SelectiveBackpropSelector) and sel.eta == 2 and sel.cache.eta == 2
    assert parse("--reduce", "stale-sb", "--sb-eta", "3").online_selector().eta == 3


@pytest.mark.parametrize("argv,needle", [
    (["--adonis-theta", "1.5"], "theta=1.5"), (["--ids-alpha", "0"], "alpha=0"),
    (["--reduce", "rpd", "--ids-alpha", "0.5"], "use one of them"),
    (["--reduce", "sb", "--adonis"], "use one of them"), (["--reduce-alpha", "7"], "alpha=7"),
])
def test_bad_flags_fail_clearly(argv, needle):
    with pytest.raises(ValueError, match=needle):
        parse(*argv)


def test_anneal_variant_builds_with_the_run_length():
    c = parse("--adonis-eta", "3", "--adonis-anneal", "2")
    sel = c.online_selector(epochs=10)
    assert sel.anneal == 2 and sel.in_warmup(8) and not sel.in_warmup(7)


def _parse_with_epochs(*argv, train_losses=True, sample_weights=True):
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    add_reduce_arguments(p)
    return config_from_args(p.parse_args(list(argv)), train_losses=train_losses, sample_weights=sample_weights)


def test_adonis_mode_prune_is_a_preset_under_the_users_flags():
    from datareduce.config import PRUNE_MODE, AdonisConfig

    rec = _parse_with_epochs("--adonis-mode", "prune", "--epochs", "30").adonis
    assert rec.mode == "prune" and rec.anneal == 4  # 1/8 of 30, rounded
    assert {k: getattr(rec, k) for k in PRUNE_MODE} == PRUNE_MODE
    paper = _parse_with_epochs("--adonis-mode", "paper", "--epochs", "30").adonis
    assert paper == AdonisConfig()  # the paper's mode is the plain defaults
    # a flag the user passes is never replaced by the preset
    mine = _parse_with_epochs("--adonis-mode", "prune", "--epochs", "30", "--adonis-prune", "0.7",
                              "--adonis-anneal", "0").adonis
    assert (mine.prune, mine.anneal, mine.prune_pool) == (0.7, 0, "dense")
    # a host that cannot hand back training losses scores instead; an explicit request is still the user's
    assert _parse_with_epochs("--adonis-mode", "prune", "--epochs", "8", train_losses=False).adonis.reuse_train_loss is False
    plain = _parse_with_epochs("--adonis-mode", "prune", "--epochs", "8", sample_weights=False).adonis
    assert plain.rescale is False and plain.reuse_train_loss is True
    with pytest.raises(ValueError, match="number of epochs"):
        _parse_with_epochs("--adonis-mode", "prune")


def test_every_flag_is_in_the_readmes_flag_table():
    """The README's flag table lists every data-reduction flag, so the docs cannot lag behind the parser."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("## Flags"):]
    table = table[:table.index("\n## ")]
    p = add_reduce_arguments(argparse.ArgumentParser())
    flags = [o for a in p._actions for o in a.option_strings if o.startswith("--") and o != "--help"]
    import re

    missing = [f for f in flags if not re.search(rf"`{re.escape(f)}[` ]", table)]
    assert not missing, f"flags missing from README's flag table: {missing}"
