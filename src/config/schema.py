"""How a component declares its config: one dataclass whose fields carry key, type, default,
allowed range and help (`param`), as transformers' `TrainingArguments` does.

A YAML node's `_target_` names the dataclass; Hydra builds it (`__post_init__` checks every
field) and the run calls its `build`. `src.config.validation.validate` checks a composed config
against the same fields before anything loads; `python -m src.spec [group]` prints the
declarations. The bottom of src/: it imports the standard library and src.config.errors.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from src.config.errors import UserError

SPECIAL_KEYS = ("_target_", "_partial_", "_convert_")


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

    def check(self, plain: Mapping[str, Any]) -> None:
        """What this component refuses of the whole config (`plain`, resolved), once each key
        is valid on its own: the checks that span groups are the group's own (validation calls
        each group's, src.config.validation)."""

    @classmethod
    def parse(cls, node: Mapping, prefix: str = "") -> Spec:
        """Build from a plain mapping; an unknown key or bad value names `prefix + key`."""
        declared = fields(cls)
        check_keys(prefix, node, (*SPECIAL_KEYS, *declared), f"a key of {qualname(cls)}")
        for name, (f, _, _) in declared.items():
            missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if missing and name not in node:
                raise UserError(f"{prefix}{name}=null: required by {qualname(cls)}")
        try:
            return cls(**{k: v for k, v in node.items() if k not in SPECIAL_KEYS})
        except UserError as e:
            raise UserError(f"{prefix}{e}") from None


def qualname(obj: Any) -> str:
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
