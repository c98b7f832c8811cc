"""Typos in command-line overrides, caught before Hydra reports them in a multi-line block.

Two mistakes Hydra refuses before the task function runs (before src.config.validation speaks):
an option a group does not have (`model=custom_hed`) and a key the composed config does not
have, written without `+` (`trainer.epochz=3`, `lrr=1e-3`). Each becomes one line naming the
override and the fix. Anything this check cannot judge (sweep functions, `hydra.*` keys, other
config folders) is left to Hydra, which still refuses it.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from omegaconf import OmegaConf

from src.config.compose import CONF, compose
from src.config.compose import options as group_options
from src.config.errors import UserError

_MISSING = object()


def check(
    overrides: list[str],
    conf: Path = CONF,
    config_name: str = "config",
    other_configs: bool = False,
) -> None:
    """Raise UserError for the first override that names a missing group option or key.
    `other_configs`: the command line adds config folders (--config-dir, ...), which may hold
    options and keys conf/ does not: nothing is checked."""
    if other_configs or any("hydra.searchpath" in a for a in overrides):
        return

    texts = [a for a in overrides if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(texts)
    except Exception:  # Hydra's own message for a malformed override is already one line
        return
    groups, keys = [], []
    taken = groups_of(config_name, conf)
    for text, override in zip(texts, overrides, strict=True):
        key = override.key_or_group
        if override.is_delete() or key.startswith("hydra"):
            continue
        if (conf / key).is_dir() and key not in taken:
            own = " (a trained run's settings come from its folder)" * (config_name == "evaluate")
            raise UserError(
                f"{text}: conf/{config_name}.yaml takes no {key} group{own}; its "
                f"groups: {', '.join(taken)}; drop {key}"
            )
        if (conf / key).is_dir():
            values = _values(override)
            if values is None:
                continue
            _check_options(text, key, values, conf)
            groups.append(f"{'+' if override.is_add() else ''}{key}={values[0]}")
        elif not (override.is_add() or override.is_force_add()):
            keys.append((text, key))
    if keys:
        _check_keys(keys, groups, conf, config_name)


def groups_of(config_name: str, conf: Path = CONF) -> list[str]:
    """The groups a primary config composes: those its defaults list names (`- group: option`),
    Hydra's own aside; conf/config.yaml takes them all, conf/evaluate.yaml the dataset."""

    entries = OmegaConf.to_container(OmegaConf.load(conf / f"{config_name}.yaml")).get("defaults")
    names = [
        k.removeprefix("override ").strip() for e in entries or [] if isinstance(e, dict) for k in e
    ]
    return [n for n in names if not n.startswith(("hydra", "/"))]


def _values(override) -> list[str] | None:
    """The option names an override selects: one, a `a,b` sweep, or None for sweep functions."""

    if override.value_type == ValueType.ELEMENT:
        value = override.value()
        return [str(value)] if isinstance(value, str | int | float) or value is None else None
    if override.value_type == ValueType.SIMPLE_CHOICE_SWEEP:
        return [str(v) for v in override.sweep_string_iterator()]
    return None


def _check_options(text: str, group: str, values: list[str], conf: Path) -> None:
    options = group_options(group, conf)
    for value in values:
        if value not in options and value not in ("null", "None"):
            close = difflib.get_close_matches(value, options, n=1)
            hint = f"did you mean {group}={close[0]}? " if close else ""
            raise UserError(
                f"{text}: conf/{group}/ has no option '{value}'; {hint}"
                f"options: {', '.join(options)}"
            )


def _check_keys(
    keys: list[tuple[str, str]], groups: list[str], conf: Path, config_name: str
) -> None:
    """Compose with the group choices alone, then look each key up in the result."""

    try:
        cfg = compose(groups, conf, config_name=config_name)
    except Exception:  # let Hydra report what composing the groups alone cannot
        return
    for text, key in keys:
        found = OmegaConf.select(cfg, key, default=_MISSING, throw_on_resolution_failure=False)
        if found is not _MISSING:
            continue
        parent_key, dot, name = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=None) if dot else cfg
        siblings = [str(s) for s in parent] if OmegaConf.is_dict(parent) else []
        close = difflib.get_close_matches(name, siblings, n=1)
        target = parent.get("_target_") if OmegaConf.is_dict(parent) else None
        if not dot or target:  # the knobs, or an object's arguments: no key can be added
            known = [k for k in siblings if not k.startswith("_")]
            where = f"{parent_key} ({target}) has no key" if dot else "no top-level key"
            fix = (
                f"did you mean {parent_key}{dot}{close[0]}?"
                if close
                else f"keys: {', '.join(known)}"
            )
            raise UserError(f"{text}: {where} {name}; {fix}")
        hint = f"did you mean {parent_key}{dot}{close[0]}? " if close else ""
        raise UserError(
            f"{text}: the composed config has no key {key}; {hint}to add a new key, write +{text}"
        )
