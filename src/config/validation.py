"""Whole-config validation: the composed config checked against every component's declaration
(src/config/schema.py) before anything loads (`python -m src.spec [group]` prints them).

One line per problem, naming the dotted key, the value and what is allowed. It sits above the
components it checks (it reads their Spec classes and the knobs); nothing below imports it.
No torch is imported here or by the declarations.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.config.errors import UserError
from src.config.knobs import Knobs
from src.config.schema import SPECIAL_KEYS, Spec, check_keys, fields, show

# The only `_target_` prefixes a config may name: the project's config classes, torch's
# optimizers and modules, transformers. Nothing else (os, subprocess, builtins) is ever called.
ALLOWED_PREFIXES = ("src.", "torch.optim.", "torch.nn.", "transformers.")
# the order of the groups' own checks: the data files last (the others read no file)
CHECK_ORDER = (
    "backbone",
    "model",
    "trainer",
    "optimizer",
    "scheduler",
    "logger",
    "metrics",
    "task",
    "dataset",
)
_DOTTED = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")


def validate(cfg: DictConfig | Mapping) -> None:
    """Raise a UserError for the first problem: an unsafe target, an unknown key, a bad value."""
    plain = resolved(cfg)
    for key, node in target_nodes(plain):
        check_target(key, node["_target_"])
    for key, value in walk(plain):
        if key.rsplit(".", 1)[-1] == "trust_remote_code" and value:
            raise UserError(f"{key}={show(value)}: false (a config never runs remote code)")
    check_keys("", plain, (*fields(Knobs), *Knobs.NODES), "a top-level key")
    nodes = {k: v for k, v in plain.items() if k in Knobs.NODES}
    knobs = {k: v for k, v in plain.items() if k not in nodes}
    top = Knobs.parse(knobs)  # first: a bad knob is named as typed, not where it lands
    parsed = {}
    for name in Knobs.NODES:
        node = nodes.get(name)
        if not isinstance(node, Mapping) or "_target_" not in node:
            raise UserError(
                f"{name}={show(node)}: an option of conf/{name}/ (a node with _target_)"
            )
        spec = spec_class(node["_target_"])
        if spec is not None:
            parsed[name] = spec.parse(node, f"{name}.")
    top.check_against(plain)
    for name in CHECK_ORDER:  # each group's checks across the config; the data files last
        if name in parsed:
            parsed[name].check(plain)


def spec_class(target: str) -> type[Spec] | None:
    """The Spec a `src.` target names (None for an allowlisted third-party callable)."""
    if not target.startswith("src."):
        return None
    obj = locate("", target)
    return obj if isinstance(obj, type) and issubclass(obj, Spec) else None


def resolved(cfg: DictConfig | Mapping) -> dict:
    """Plain values with every interpolation resolved; Hydra's own node left out."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        key = e.full_key or "config"
        raw = dict(walk(OmegaConf.to_container(cfg, resolve=False))).get(key)
        reason = str(e).strip().splitlines()[0]
        raise UserError(f"{key}={show(raw)}: a value that resolves ({reason})") from None
    plain.pop("hydra", None)
    return plain


def walk(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every entry, depth first; list items as key.0, key.1."""
    items = node.items() if isinstance(node, Mapping) else enumerate(node)
    for key, value in items:
        dotted = f"{prefix}{key}"
        yield dotted, value
        if isinstance(value, Mapping | list):
            yield from walk(value, f"{dotted}.")


def target_nodes(plain: Mapping) -> Iterator[tuple[str, Mapping]]:
    """(dotted key, node) for every mapping with a `_target_`: what instantiate would call."""
    for key, value in walk(plain):
        if isinstance(value, Mapping) and "_target_" in value:
            yield key, value


def check_target(key: str, target: Any) -> None:
    """Refuse a target outside the allowlist, and a `src.` target that is not our own class."""
    where = f"{key}._target_"
    if not isinstance(target, str) or not _DOTTED.fullmatch(target):
        raise UserError(f"{where}={show(target)}: a dotted path of public names (module.callable)")
    if not target.startswith(ALLOWED_PREFIXES):
        raise UserError(
            f"{where}={target}: refused; a target must start with {', '.join(ALLOWED_PREFIXES)}"
        )
    if target.startswith("src."):  # our modules import no torch: cheap to look up now
        locate(key, target)


def locate(key: str, target: str) -> Callable:
    """The callable a target names, refused unless it is defined under an allowed prefix."""

    try:
        fn = get_object(target)
    except Exception as e:
        reason = str(e).strip().splitlines()[0]
        raise UserError(f"{key}._target_={target}: an importable callable ({reason})") from None
    module = getattr(fn, "__module__", None) or ""
    if not callable(fn) or not f"{module}.".startswith(ALLOWED_PREFIXES):
        raise UserError(
            f"{key}._target_={target}: refused; it is {module or '?'}.{getattr(fn, '__name__', '')}"
            f", not a callable defined under {', '.join(ALLOWED_PREFIXES)}"
        )
    return fn


def check_callables(cfg: DictConfig | Mapping) -> None:
    """Third-party targets (torch.optim.Adam, ...) have no Spec: import each one (nothing is
    built) and check its node's keys against the callable's signature."""

    for key, node in target_nodes(resolved(cfg)):
        fn = locate(key, node["_target_"])
        if isinstance(fn, type) and issubclass(fn, Spec):
            continue
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):  # some builtins have no signature to check
            continue
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            continue
        for name, value in ((k, v) for k, v in node.items() if k not in (*SPECIAL_KEYS, *params)):
            what = f"not an argument of {node['_target_']} ({', '.join(params)})"
            raise UserError(f"{key}.{name}={show(value)}: {what}")
