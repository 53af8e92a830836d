"""The ``--ids-*``, ``--adonis-*``, ``--reduce`` and baseline flags, defined once for every trainer and patch.

``add_reduce_arguments(parser)`` adds them to any argparse parser; ``config_from_args(args)`` turns the parsed
namespace into a validated :class:`~datareduce.config.ReduceConfig`. Both come from :data:`GROUPS`: every field
of a config class that has help text is the flag ``--<PREFIX>-<field>`` (its default, choices and allowed range
are the field's), so a flag always names its field. Next to them are the method switches ``--adonis``,
``--ids`` and ``--reduce METHOD``. Any ``--adonis-*`` flag switches ADONIS on, and any IDS selection flag
(``--ids-alpha``, ``--ids-mode``, ``--ids-gamma``, ``--ids-prototypes``, ``--ids-manifest``) switches IDS on;
their defaults are the paper's (Table A2).
"""
from __future__ import annotations

import argparse
from typing import Optional

from ._validate import UsageError
from .config import (METHODS, AdonisConfig, ComposerSBConfig, EmbedConfig, IDSConfig, InfoBatchConfig,
                     OfflineConfig, RandomKeepConfig, ReduceConfig, RS2Config, SBConfig, families, field_type,
                     flag_dest, flag_fields, flag_of)

GROUPS = (  # (argparse group title, its method switch: flag and argparse keywords, the config classes of its flags)
    ("ADONIS (online importance sampling, paper §3.1)",
     ("--adonis", dict(action="store_true", help="train with ADONIS (implied by any --adonis-* flag)")),
     (AdonisConfig, ReduceConfig)),
    ("IDS (offline representative subset, paper §3.2)",
     ("--ids", dict(action="store_true", help="train on an IDS subset (implied by --ids-alpha etc.)")),
     (IDSConfig, EmbedConfig)),
    ("Baselines",
     ("--reduce", dict(choices=METHODS, default="full", help="baseline method (default: full)")),
     (OfflineConfig, SBConfig, ComposerSBConfig, InfoBatchConfig, RandomKeepConfig, RS2Config)),
)


def add_reduce_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the data-reduction flag groups to ``parser`` (returns it). Every field flag defaults to None (not
    given), so the config's own default applies and a given flag can be told from an unset one."""
    for title, (switch, keywords), classes in GROUPS:
        g = parser.add_argument_group(title)
        g.add_argument(switch, **keywords)
        for cls in classes:
            for f in flag_fields(cls):
                typ, text = field_type(cls, f.name), f.metadata["help"]
                if typ is bool:
                    g.add_argument(flag_of(cls, f.name), dest=flag_dest(cls, f.name), action="store_const",
                                   const=True, default=None, help=text)
                    continue
                shown = "" if f.default is None else f" (default: {f.default})"
                g.add_argument(flag_of(cls, f.name), dest=flag_dest(cls, f.name), type=typ, default=None,
                               choices=f.metadata["choices"], help=text + shown)
    return parser


def _given_fields(args: argparse.Namespace, cls) -> dict:
    """The fields of config class ``cls`` whose flags ``args`` sets: field name → value."""
    values = {f.name: getattr(args, flag_dest(cls, f.name), None) for f in flag_fields(cls)}
    return {k: v for k, v in values.items() if v is not None}


def config_from_args(args: argparse.Namespace, seed=None, train_losses: bool = True, sample_weights: bool = True,
                     epochs=None) -> ReduceConfig:
    """The validated :class:`ReduceConfig` that ``args`` asks for (``seed`` defaults to ``args.seed`` or 0,
    ``epochs`` to ``args.epochs``).

    ``train_losses`` and ``sample_weights``: whether the host's training step hands back per-sample losses and
    takes per-sample loss weights (``--adonis-mode prune`` uses them where it can, see
    :meth:`AdonisConfig.from_mode`)."""
    seed = seed if seed is not None else (getattr(args, "seed", None) or 0)
    given = {name: _given_fields(args, cls) for name, cls in families().items()}
    a, i = given.pop("adonis"), given.pop("ids")
    adonis = None
    if args.adonis or a:
        adonis = AdonisConfig.from_mode(a.pop("mode", "paper"), epochs=epochs or getattr(args, "epochs", None),
                                        train_losses=train_losses, sample_weights=sample_weights, seed=seed, **a)
    ids = IDSConfig(seed=seed, **i) if args.ids or i else None
    return ReduceConfig(method=args.reduce, ids=ids, adonis=adonis, seed=seed,
                        **{name: families()[name](**values) for name, values in given.items()},
                        **_given_fields(args, ReduceConfig))


def resumable_flags() -> frozenset:
    """The dests of the flags a resumed run may change (η, history lengths): the selector state a checkpoint
    restores (cached losses with the epochs they were scored in, the loss history) holds for any value."""
    return frozenset(flag_dest(cls, f.name) for _, _, classes in GROUPS for cls in classes
                     for f in flag_fields(cls) if f.metadata["resumable"])


def described_value(desc: dict, dest: str):
    """The value the run that :meth:`ReduceConfig.describe` gave ``desc`` used for the flag ``dest`` (None
    where ``desc`` has no such family)."""
    for name, cls in families().items():
        for f in flag_fields(cls):
            if flag_dest(cls, f.name) == dest:
                return (desc.get(name) or {}).get(f.name)
    return desc.get(dest)


def read_config_file(path, parser: argparse.ArgumentParser):
    """Split a ``--config`` YAML mapping into (argparse defaults for ``parser``'s own flags, the other keys).

    Keys are flag names with or without dashes (``lr-milestones`` or ``lr_milestones``). The flag values become
    defaults, so flags given on the command line still win; a bad choice is a ``parser.error``. What to do with
    the other keys is the caller's: an error for the classification trainer, Ultralytics arguments for YOLO.
    """
    import yaml
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        parser.error(f"--config {path}: no such file")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        parser.error(f"--config {path}: expected a mapping of flag names to values")
    by_name = {}
    for action in parser._actions:
        for opt in action.option_strings:
            if opt.startswith("--"):
                by_name[opt[2:]] = action
    flags, other = {}, {}
    for key, value in data.items():
        action = by_name.get(str(key).replace("_", "-"))
        if action is None or action.dest in ("help", "config"):
            other[key] = value
            continue
        if action.choices is not None and value is not None and value not in action.choices:
            parser.error(f"--config {path}: {key}={value!r} is not one of {list(action.choices)}")
        flags[action.dest] = value
    return flags, other


def apply_config_file(parser: argparse.ArgumentParser, argv=None):
    """If ``argv`` has ``--config FILE``, make its values for ``parser``'s flags the parser's defaults (the
    command line still wins). Returns (FILE, its other keys), or (None, {}) without ``--config``."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return None, {}
    flags, other = read_config_file(known.config, parser)
    parser.set_defaults(**flags)
    return known.config, other


# ----------------------------------------------------------------------------------------------- resuming
# What a refused change tells the user to do, by how the host takes its flags on resume.
DROP_FLAGS = "drop these flags"  # the host continues with the run's own flags when none is given (classify, YOLOv5)
GIVE_FLAGS = "give the flags the run was started with"  # the host trains with the flags given now (Ultralytics, vision)
SWITCHES = (("adonis", "--adonis"), ("ids", "--ids"))  # the families the method switches turn on
IGNORED_ON_RESUME = ("seed",)  # the host's own flag: each host keeps (or checks) its seed itself


def _comparable(desc: dict) -> dict:
    """``desc`` less what a resumed run may not compare: the seeds (the host's), where the embeddings are cached."""
    out = {k: v for k, v in desc.items() if k not in IGNORED_ON_RESUME}
    for name, value in out.items():
        if isinstance(value, dict):
            out[name] = {k: v for k, v in value.items()
                         if k not in IGNORED_ON_RESUME and not (name == "embed" and k == "cache_dir")}
    return out


def _flag_fields() -> list:
    """Every field flag: (its family in :meth:`ReduceConfig.describe`'s dict or None for a top-level one, field
    name, dest, flag), in the flags' order."""
    by_cls = {cls: name for name, cls in families().items()}
    return [(by_cls.get(cls), f.name, flag_dest(cls, f.name), flag_of(cls, f.name))
            for _, _, classes in GROUPS for cls in classes for f in flag_fields(cls)]


def shown_value(value) -> str:
    """A setting's value as a resume message shows it."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


def resume_changes(was: dict, now: dict, given=None) -> tuple:
    """What a resumed run changes in its data reduction: ``was`` the settings it was started with and ``now``
    the ones it is resumed with (both :meth:`ReduceConfig.describe` dicts).

    Returns ``(honoured, refused)``. ``honoured``: flag → (the run's value, the new one) of the changed η and
    loss-history lengths (:func:`resumable_flags`) of a method the run uses and still uses: the restored
    selector state (cached losses with the epoch each was scored in, the loss history) holds for any value, and
    the selector built for the resumed run keeps the new one. ``refused``: one ``"FLAG WAS → NOW"`` part per
    other change (a method switched on or off, another parameter). ``given``: the dests of the flags the user
    set now, where the host knows them (only those are named; a method's switch is named when given, else its
    flags that were); None names every change. The seeds and the embedding cache folder are not compared."""
    was, now = _comparable(was), _comparable(now)
    free = {dest for dest in resumable_flags()
            if described_value(was, dest) is not None and described_value(now, dest) is not None}
    honoured, refused = {}, []
    named = lambda dest: given is None or dest in given  # noqa: E731
    if was.get("method") != now.get("method") and named("reduce"):
        refused.append(f"--reduce {was.get('method')} → {now.get('method')}")
    switched = {family for family in families() if (family in was) != (family in now)}  # on in one of them only
    for family, flag in SWITCHES:  # (a baseline's family follows --reduce)
        if family in switched and named(family):
            refused.append(f"{flag} {shown_value(family in was)} → {shown_value(family in now)}")
    for family, name, dest, flag in _flag_fields():
        a, b = described_value(was, dest), described_value(now, dest)
        if a == b or not named(dest) or (given is None and family in switched):
            continue
        if dest in free:
            honoured[flag] = (a, b)
        else:
            refused.append(f"{flag} {shown_value(a)} → {shown_value(b)}")
    if given is None and not refused:  # a difference no flag names (a value the host derives): named by its key
        kept = {k: dict(v) if isinstance(v, dict) else v for k, v in now.items()}
        for family, name, dest, _ in _flag_fields():
            if dest in free:
                kept[family][name] = was[family][name]
        for key in sorted(set(was) | set(kept)):
            a, b = was.get(key), kept.get(key)
            if isinstance(a, dict) and isinstance(b, dict):
                refused += [f"{key}.{k} {shown_value(a.get(k))} → {shown_value(b.get(k))}"
                            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            elif a != b:
                refused.append(f"{key} {shown_value(a)} → {shown_value(b)}")
    return honoured, refused


def resume_refusal(where: str, parts, fix: str = DROP_FLAGS, new_run: str = "") -> str:
    """The one line that refuses a resume whose settings changed (``parts``: ``"FLAG WAS → NOW"``); ``where``
    names the checkpoint (``--resume FILE``, ``resume=FILE``), ``new_run`` how the host starts a new run."""
    new_run = f" ({new_run})" if new_run else ""
    return (f"{where}: the run was started with other settings ({', '.join(parts)}); a resumed run continues with "
            f"its own: {fix}, or start a new run{new_run} to change them")


def check_resume(was: Optional[dict], now: dict, where: str, fix: str = DROP_FLAGS, new_run: str = "") -> dict:
    """The changes of :func:`resume_changes` (``given`` None) a resumed run honours (flag → (was, now)); any other
    change is refused: :class:`~datareduce._validate.UsageError` with :func:`resume_refusal`'s line. ``was`` None
    (a run that saved no settings): nothing to compare, nothing honoured."""
    if was is None:
        return {}
    honoured, refused = resume_changes(was, now)
    if refused:
        raise UsageError(resume_refusal(where, refused, fix, new_run))
    return honoured


def resumed_line(honoured: dict) -> str:
    """What a resumed run prints of the changes it honours: ``datareduce: resumed with --adonis-eta 3 → 1``."""
    return "datareduce: resumed with " + ", ".join(f"{flag} {a} → {b}" for flag, (a, b) in honoured.items())


def changed_record(honoured: dict) -> dict:
    """The ``changed`` entry of the ``resume`` record: flag → [the run's value, the new one]."""
    return {flag: list(values) for flag, values in honoured.items()}
