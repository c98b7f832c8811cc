"""One declaration per component, read by both validation and construction.

A component's config is a dataclass next to its code whose fields carry key, type, default,
allowed range and help (`param`), as transformers' `TrainingArguments` does. A YAML node's
`_target_` names it; Hydra builds it (`__post_init__` checks every field) and the run calls its
`build`. `validate` checks the composed config against the same fields before anything loads:
one line naming the dotted key, the value and what is allowed. No torch is imported here or by
the declarations; `python -m src.spec [group]` prints them.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.errors import UserError

# The only `_target_` prefixes a config may name: the project's config classes, torch's
# optimizers and modules, transformers. Nothing else (os, subprocess, builtins) is ever called.
ALLOWED_PREFIXES = ("src.", "torch.optim.", "torch.nn.", "transformers.")
SPECIAL_KEYS = ("_target_", "_partial_", "_convert_")
_DOTTED = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")


def show(value: Any) -> str:
    """A value as it is typed in YAML or an override."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return "''" if value == "" else str(value)


# --- declaring a field ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Param:
    """What one field allows, and a help line. Bounds and choices become the error's words."""

    help: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None
    test: Callable[[Any], bool] | None = None  # a rule bounds cannot say, with `allowed` words
    allowed: str | None = None

    def words(self, kind: type) -> str:
        if self.allowed or self.choices:
            return self.allowed or f"one of {', '.join(self.choices)}"
        if kind in (bool, str):
            return "true or false" if kind is bool else "a non-empty string"
        noun = "an integer" if kind is int else "a number"
        low, bracket = (self.ge, "[") if self.ge is not None else (self.gt, "(")
        top, close = (self.le, "]") if self.le is not None else (self.lt, ")")
        if low is not None and top is not None:
            return f"{noun} in {bracket}{low:g}, {top:g}{close}"
        if low is not None or top is not None:
            sign = {"[": ">=", "(": ">", "]": "<=", ")": "<"}[bracket if low is not None else close]
            return f"{noun} {sign} {low if low is not None else top:g}"
        return noun

    def accepts(self, kind: type, value: Any) -> bool:
        if self.test is not None or not _is(kind, value):
            return self.test is not None and self.test(value)
        if self.choices is not None or kind is str:
            return value in self.choices if self.choices is not None else value != ""
        return kind not in (int, float) or (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )


def param(default: Any, help: str, **rule: Any) -> Any:
    """A dataclass field with its default, help line and rule (ge/gt/le/lt/choices/test)."""
    meta = {"param": Param(help, **rule)}
    if default is dataclasses.MISSING:  # required
        return dataclasses.field(metadata=meta)
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _is(kind: type, value: Any) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typing.get_origin(kind) or kind)


def _unpack(hint: Any) -> tuple[type, bool]:
    """(the type, whether null is allowed) of an annotation such as `int | None`."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def fields(cls: type) -> dict[str, tuple[dataclasses.Field, type, bool]]:
    """name -> (field, type, nullable) for every declared field of a Spec class."""
    hints = typing.get_type_hints(cls)
    return {f.name: (f, *_unpack(hints[f.name])) for f in dataclasses.fields(cls) if f.init}


class Spec:
    """Base of every component's config dataclass: checks each field when it is built."""

    def __post_init__(self) -> None:
        for name, (f, kind, nullable) in fields(type(self)).items():
            value = getattr(self, name)
            rule: Param | None = f.metadata.get("param")
            if rule is None or (value is None and nullable):
                continue
            if not rule.accepts(kind, value):
                words = rule.words(kind) + (", or null" if nullable else "")
                raise UserError(f"{name}={show(value)}: {words}")

    @classmethod
    def parse(cls, node: Mapping, prefix: str = "") -> Spec:
        """Build from a plain mapping; an unknown key or bad value names `prefix + key`."""
        declared = fields(cls)
        check_keys(prefix, node, (*SPECIAL_KEYS, *declared), f"a key of {_name(cls)}")
        for name, (f, _, _) in declared.items():
            missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if missing and name not in node:
                raise UserError(f"{prefix}{name}=null: required by {_name(cls)}")
        try:
            return cls(**{k: v for k, v in node.items() if k not in SPECIAL_KEYS})
        except UserError as e:
            raise UserError(f"{prefix}{e}") from None


def _name(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def check_keys(prefix: str, node: Mapping, known: tuple[str, ...], what: str) -> None:
    """Refuse a key that is not declared, suggesting the closest declared one."""
    known = tuple(k for k in known if k not in SPECIAL_KEYS)
    for key, value in node.items():
        if key in known or key in SPECIAL_KEYS:
            continue
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f"did you mean {prefix}{close[0]}?" if close else f"use one of {', '.join(known)}"
        raise UserError(f"{prefix}{key}={show(value)}: not {what}; {hint}")


# --- validate: the whole composed config, before anything loads ---------------------------


def validate(cfg: DictConfig | Mapping) -> None:
    """Raise a UserError for the first problem: an unsafe target, an unknown key, a bad value."""
    from src.knobs import Knobs

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
    for name in Knobs.NODES:
        node = nodes.get(name)
        if not isinstance(node, Mapping) or "_target_" not in node:
            raise UserError(
                f"{name}={show(node)}: an option of conf/{name}/ (a node with _target_)"
            )
        spec = spec_class(node["_target_"])
        if spec is not None:
            spec.parse(node, f"{name}.")
    top.check_against(plain)


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
    from hydra.utils import get_object

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
    import inspect

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


def position_limit(backbone: Mapping) -> int | None:
    """The backbone's max_position_embeddings when its config.json is on disk (None: hub id)."""
    from src.backbones import PKG_SCHEME, resolve_path

    overrides = backbone.get("config_overrides") or {}
    if "max_position_embeddings" in overrides:
        return overrides["max_position_embeddings"]
    path = backbone["path"]
    config_file = Path(resolve_path(path) if path.startswith(PKG_SCHEME) else path) / "config.json"
    if not config_file.is_file():
        return None
    return json.loads(config_file.read_text()).get("max_position_embeddings")


# --- python -m src.spec [group]: the declarations, for people ------------------------------


def describe(cls: type[Spec]) -> list[str]:
    """One line per field: key, type, default, what it allows, help."""
    lines = [f"{_name(cls)}: {(cls.__doc__ or '').strip().splitlines()[0]}"]
    for name, (f, kind, nullable) in fields(cls).items():
        rule: Param | None = f.metadata.get("param")
        default = f.default_factory() if callable(f.default_factory) else f.default
        default = "(required)" if default is dataclasses.MISSING else default
        words = rule.words(kind) + (", or null" if nullable else "") if rule else ""
        lines.append(f"  {name} = {show(default)}  ({words}) {rule.help if rule else ''}")
    return lines


def main(argv: list[str] | None = None) -> None:
    import sys

    from src.compose import CONF
    from src.knobs import Knobs

    for group in (argv if argv is not None else sys.argv[1:]) or ["knobs", *Knobs.NODES]:
        options = {"knobs": Knobs} if group == "knobs" else {}
        for path in sorted((CONF / group).glob("[!_]*.yaml")):  # _shared.yaml: no option
            spec = spec_class(OmegaConf.load(path).get("_target_") or "")
            if spec is not None and spec not in options.values():
                options[f"{group}={path.stem}"] = spec
        for name, spec in options.items():
            print(name, *describe(spec), sep="\n", end="\n\n")


if __name__ == "__main__":  # through the imported module: one Spec class, not two
    from src.spec import main as _main

    _main()
