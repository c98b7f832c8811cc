"""The composed config's schema, checked before any model, tokenizer or corpus loads.

A typo or a bad override should fail in a second with one line naming the dotted key, the
value and what is allowed, not minutes later inside transformers. `validate` reads plain
values only and imports neither torch nor transformers (the choices come from modules that
load without them), so it runs first thing in `src.run.main`.

Targets are checked twice. `validate` refuses any `_target_` outside the allowlist before
anything is imported; `check_callables` (first thing in `train`) imports each target, refuses
one that is really defined elsewhere (`torch.nn.modules.module.torch.load` is torch.load) and
checks the node's keys against the callable's signature.
"""

from __future__ import annotations

import difflib
import inspect
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.backbones import INITS, PKG_SCHEME, resolve_path
from src.data import EMPTY_TEXT, TRUNCATIONS
from src.errors import UserError
from src.metrics import CORE
from src.optim import SCHEDULES
from src.trainers.common import DEVICES, PRECISIONS

# Mirrors src.models.POOLINGS, which cannot be imported without torch; a test keeps them equal.
POOLINGS = ("cls", "mean")

# The only `_target_` prefixes a config may name: the project's builders, torch's optimizers
# and modules, transformers. Nothing else (os, subprocess, builtins) is ever called.
ALLOWED_PREFIXES = ("src.", "torch.optim.", "torch.nn.", "transformers.")
SPECIAL_KEYS = ("_target_", "_partial_")
MIN_MAX_LENGTH = 3  # [CLS], one word piece, [SEP]
_DOTTED = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")


# --- rules: what one key accepts ----------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A test for one value and the words an error shows for it."""

    allowed: str
    test: Callable[[Any], bool]

    def check(self, key: str, value: Any) -> None:
        if not self.test(value):
            raise UserError(f"{key}={show(value)}: {self.allowed}")


def show(value: Any) -> str:
    """A value as it is typed in YAML or an override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if value == "":
        return "''"
    return str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _nullable(rule: Rule, null: bool) -> Rule:
    if not null:
        return rule
    return Rule(f"{rule.allowed}, or null", lambda v: v is None or rule.test(v))


def integer(low: int | None = None, null: bool = False) -> Rule:
    words = "an integer" if low is None else f"an integer >= {low}"
    return _nullable(Rule(words, lambda v: _is_int(v) and (low is None or v >= low)), null)


def number(
    low: float, high: float | None = None, low_open: bool = False, high_open: bool = False
) -> Rule:
    """A real number in an interval: number(0, 1, high_open=True) is [0, 1)."""
    if high is None:
        words = f"a number {'>' if low_open else '>='} {low:g}"
    else:
        words = (
            f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        )

    def test(v: Any) -> bool:
        if not _is_number(v):
            return False
        above = v > low if low_open else v >= low
        below = high is None or (v < high if high_open else v <= high)
        return above and below

    return Rule(words, test)


def choice(options: tuple[str, ...]) -> Rule:
    return Rule(f"one of {', '.join(options)}", lambda v: v in options)


def text(null: bool = False) -> Rule:
    return _nullable(Rule("a non-empty string", lambda v: isinstance(v, str) and v != ""), null)


def flag() -> Rule:
    return Rule("true or false", lambda v: isinstance(v, bool))


def _is_device(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    kind, _, index = value.partition(":")
    return kind in DEVICES and (not index or (kind == "cuda" and index.isdigit()))


def _is_plain(value: Any) -> bool:
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


DEVICE = Rule(f"one of {', '.join(DEVICES)} (cuda:N for one GPU)", _is_device)
DROPOUT = number(0, 1, high_open=True)
BETAS = Rule(
    "a list of two numbers in [0, 1)",
    lambda v: isinstance(v, list) and len(v) == 2 and all(DROPOUT.test(b) for b in v),
)
PLAIN_MAPPING = Rule(
    "a mapping of config.json keys to plain values",
    lambda v: isinstance(v, Mapping) and all(_is_plain(x) for x in v.values()),
)


# --- the schema: the knobs, and for each group the builders its options name ------------


@dataclass(frozen=True)
class Builder:
    """The arguments a `_target_` takes from YAML; `runtime` ones are passed by src.run."""

    args: Mapping[str, Rule]
    runtime: tuple[str, ...] = ()


KNOBS: dict[str, Rule] = {
    "seed": integer(),
    "lr": number(0, low_open=True),
    "epochs": integer(1),
    "batch_size": integer(1),
    "eval_batch_size": integer(1),
    "max_length": integer(MIN_MAX_LENGTH),  # and at most the backbone's position limit
    "truncation": choice(TRUNCATIONS),
    "dropout": DROPOUT,
    "device": DEVICE,
    "compile": flag(),
    "resume": text(null=True),  # auto, or a checkpoint / run folder (checked when resolved)
}

_DATASET = {
    "test_size": number(0, 1, low_open=True, high_open=True),
    "split_seed": integer(),
    "val_size": number(0, 1, high_open=True),
    "max_train_samples": integer(1, null=True),
    "max_eval_samples": integer(1, null=True),
}
_TRAINER = {
    "epochs": integer(1),
    "batch_size": integer(1),
    "eval_batch_size": integer(1),
    "grad_accum_steps": integer(1),
    "max_grad_norm": _nullable(number(0), null=True),
    "metric_for_best_model": choice(CORE),
    "early_stopping_patience": integer(1, null=True),
    "device": DEVICE,
    "precision": choice(PRECISIONS),
    "num_workers": integer(0),
    "seed": integer(),
    "logging_steps": integer(1),
    "compile": flag(),
}
_MODEL_RUNTIME = ("backbone", "id2label")
_OPTIMIZER_RUNTIME = ("params",)

SCHEMA: dict[str, dict[str, Builder]] = {
    "dataset": {
        "src.data.movie_reviews": Builder(_DATASET),
        "src.data.files": Builder(
            {
                "train_file": text(null=True),
                "test_file": text(null=True),
                "text_column": text(),
                "label_column": text(),
                "empty_text": choice(EMPTY_TEXT),
                **_DATASET,
            }
        ),
    },
    "backbone": {
        "src.backbones.Backbone": Builder(
            {
                "name": text(),
                "path": text(),
                "init": choice(INITS),
                "config_overrides": PLAIN_MAPPING,
            }
        ),
    },
    "model": {
        "src.models.hf_head": Builder({"dropout": DROPOUT}, _MODEL_RUNTIME),
        "src.models.custom_head": Builder(
            {"dropout": DROPOUT, "pooling": choice(POOLINGS)}, _MODEL_RUNTIME
        ),
    },
    "trainer": {
        "src.trainers.hf.HFTrainer": Builder(
            {**_TRAINER, "save_total_limit": integer(1, null=True)}, ("logger",)
        ),
        "src.trainers.manual.ManualTrainer": Builder(
            {
                **_TRAINER,
                "save_steps": integer(1, null=True),
                "save_total_limit": integer(1, null=True),
            },
            ("logger",),
        ),
    },
    "optimizer": {
        "torch.optim.AdamW": Builder(
            {
                "lr": number(0, low_open=True),
                "betas": BETAS,
                "eps": number(0, low_open=True),
                "weight_decay": number(0),
                "amsgrad": flag(),
            },
            _OPTIMIZER_RUNTIME,
        ),
        "torch.optim.SGD": Builder(
            {
                "lr": number(0, low_open=True),
                "momentum": number(0),
                "dampening": number(0),
                "weight_decay": number(0),
                "nesterov": flag(),
            },
            _OPTIMIZER_RUNTIME,
        ),
    },
    "logger": {
        "src.loggers.NullLogger": Builder({}, ("run_dir",)),
        "src.loggers.TensorBoardLogger": Builder({}, ("run_dir",)),
        "src.loggers.CSVLogger": Builder({}, ("run_dir",)),
    },
    "scheduler": {
        "src.optim.warmup_schedule": Builder(
            {"name": choice(SCHEDULES), "warmup_ratio": number(0, 1)},
            ("optimizer", "num_training_steps"),
        ),
    },
}
GROUPS = tuple(SCHEMA)


def builder(target: str) -> Builder | None:
    """The schema of a target, whichever group names it."""
    return next((b[target] for b in SCHEMA.values() if target in b), None)


# --- validate: the whole composed config, before anything loads ---------------------------


def validate(cfg: DictConfig | Mapping) -> None:
    """Raise a UserError for the first problem: an unsafe target, an unknown key, a bad value."""
    plain = resolved(cfg)
    for key, node in target_nodes(plain):
        check_target(key, node["_target_"], group=key if key in GROUPS else None)
    for key, value in walk(plain):
        if key.rsplit(".", 1)[-1] == "trust_remote_code" and value:
            raise UserError(f"{key}={show(value)}: false (a config never runs remote code)")
    check_keys("", plain, (*KNOBS, *GROUPS), "a top-level key")
    for key, rule in KNOBS.items():
        rule.check(key, plain.get(key))
    for group in GROUPS:
        check_group(group, plain.get(group))
    limit = position_limit(plain["backbone"])
    if limit is not None and plain["max_length"] > limit:
        raise UserError(
            f"max_length={plain['max_length']}: an integer from {MIN_MAX_LENGTH} to {limit} "
            f"(max_position_embeddings of backbone {plain['backbone'].get('name')})"
        )


def resolved(cfg: DictConfig | Mapping) -> dict:
    """Plain values with every interpolation resolved; Hydra's own node left out."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        key = e.full_key or "config"
        raw = _raw(OmegaConf.to_container(cfg, resolve=False), key)
        reason = str(e).strip().splitlines()[0]
        raise UserError(f"{key}={show(raw)}: a value that resolves ({reason})") from None
    plain.pop("hydra", None)
    return plain


def _raw(container: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(container, Mapping) or part not in container:
            return None
        container = container[part]
    return container


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
    if "_target_" in plain:
        yield "", plain
    for key, value in walk(plain):
        if isinstance(value, Mapping) and "_target_" in value:
            yield key, value


def check_target(key: str, target: Any, group: str | None = None) -> None:
    """Refuse a target outside the allowlist, and any `src.` target that is not a builder."""
    where = f"{key}._target_" if key else "_target_"
    if not isinstance(target, str) or not _DOTTED.fullmatch(target):
        raise UserError(f"{where}={show(target)}: a dotted path of public names (module.callable)")
    if not target.startswith(ALLOWED_PREFIXES):
        raise UserError(
            f"{where}={target}: refused; a target must start with {', '.join(ALLOWED_PREFIXES)}"
        )
    known = SCHEMA[group] if group else {t: b for g in SCHEMA.values() for t, b in g.items()}
    if target.startswith("src.") and target not in known:
        what = f"{group} builders" if group else "project's builders"
        raise UserError(f"{where}={target}: refused; the {what} are {', '.join(known)}")


def check_keys(prefix: str, node: Mapping, known: tuple[str, ...], what: str) -> None:
    """Refuse a key the schema does not know, suggesting the closest known one."""
    for key, value in node.items():
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f"did you mean {prefix}{close[0]}?" if close else f"use one of {', '.join(known)}"
        raise UserError(f"{prefix}{key}={show(value)}: not {what}; {hint}")


def check_group(group: str, node: Any) -> None:
    """The group's node names a target; for a known builder, every key and value is checked."""
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise UserError(f"{group}={show(node)}: an option of conf/{group}/ (a node with _target_)")
    flag().check(f"{group}._partial_", node.get("_partial_", False))
    spec = SCHEMA[group].get(node["_target_"])
    if spec is None:  # an allowlisted third-party callable: check_callables checks its keys
        return
    check_keys(f"{group}.", node, (*SPECIAL_KEYS, *spec.args), f"an argument of {node['_target_']}")
    for key, rule in spec.args.items():
        if key in node:
            rule.check(f"{group}.{key}", node[key])


def position_limit(backbone: Mapping) -> int | None:
    """The backbone's max_position_embeddings when its config.json is on disk (None: hub id)."""
    overrides = backbone.get("config_overrides") or {}
    if "max_position_embeddings" in overrides:
        return overrides["max_position_embeddings"]
    path = backbone["path"]
    config_file = Path(resolve_path(path) if path.startswith(PKG_SCHEME) else path) / "config.json"
    if not config_file.is_file():
        return None
    return json.loads(config_file.read_text()).get("max_position_embeddings")


# --- check_callables: each target imported and matched to its signature --------------------


def check_callables(cfg: DictConfig | Mapping) -> None:
    """Import every target (no object is built) and check its node against the signature."""
    for key, node in target_nodes(resolved(cfg)):
        target = node["_target_"]
        fn = locate(key, target)
        spec = builder(target)
        problem = signature_problem(node, fn, spec.runtime if spec else ())
        if problem:
            raise UserError(f"{key}.{problem}" if key else problem)


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


def signature_problem(node: Mapping, fn: Callable, runtime: tuple[str, ...] = ()) -> str | None:
    """`key=value: why` for the first key `fn` does not take, or required argument missing."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # some builtins have no signature to check
        return None
    target = node.get("_target_", getattr(fn, "__qualname__", "?"))
    named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key, value in node.items():
            if key not in SPECIAL_KEYS and key not in named:
                return f"{key}={show(value)}: not an argument of {target} ({', '.join(named)})"
    if node.get("_partial_"):
        return None
    for name in named:
        required = params[name].default is inspect.Parameter.empty
        if required and name not in node and name not in runtime:
            return f"{name}=null: required by {target}"
    return None
