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
