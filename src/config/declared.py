"""One home per default: each class's declared defaults, written as the YAML Hydra composes.

A default is declared once: in its class's Spec dataclass (key, type, default, range and help;
src/config/schema.py), or, for a class that is no Spec (a logger), in its `__init__`; the
sweeper's keys in its `DECLARED` dataclass. `python -m src.config.declared` writes each
class's declared defaults to conf/declared/<Class>.yaml, a file nobody edits. An option's YAML
starts from it (`- /declared/<Class>@_here_` first in its defaults list) and writes only what
it sets otherwise: its `_target_`, a knob it reads (`epochs: ${epochs}`), a preset's own value
(trainer=hf's `group_by_length: false`, a backbone's name); conf/config.yaml does the same for
the knobs (`/declared/Knobs`) and the metrics node, conf/evaluate.yaml for src.evaluate. So
every key is in the composed config (an override needs no `+`), a Hydra user finds a default one
file away, any Hydra app (the compose API from anywhere included) composes it with nothing
registered, and `python -m src.spec` prints what a run uses.

Two guards keep it one home: `stale` (a declaration changed and its file not written again:
one line before a run, tests/test_defaults.py in CI) and `second_homes` (a value an option's
YAML writes that its class already declares), both over every file of conf/.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import OmegaConf

from src.config.errors import UserError
from src.config.knobs import Evaluation, Knobs
from src.config.schema import show

CONF = Path(__file__).resolve().parents[2] / "conf"
GROUP = "declared"  # conf/declared/: the written declarations
ABSENT = "<absent>"
RUNTIME = ("self", "run_dir")  # what a logger gets from the run, not from its YAML
OURS = ("src.", "hydra_plugins.src_sweepers.")  # the `_target_`s whose declarations we guard


@functools.cache
def classes(conf: Path = CONF) -> dict[str, type]:
    """`_target_` as conf/ names it -> class, for the two apps' top-level keys (src.run's
    knobs, src.evaluate's: no target) and every class of ours a conf/ file builds, found as
    Hydra finds them, by name (no torch loads here)."""

    targets = dict.fromkeys(t for path in options(conf) for t in _targets(load(path)) if _ours(t))
    return {"": Knobs, ".": Evaluation, **{t: get_class(t) for t in targets}}


def options(conf: Path = CONF) -> list[Path]:
    """Every YAML file of conf/ but the written declarations."""
    return [p for p in sorted(Path(conf).rglob("*.yaml")) if p.parent.name != GROUP]


def _targets(node: Any) -> Iterator[str]:
    """Every `_target_` in a YAML node, nested ones too (Hydra's own node aside: its callbacks
    are no component of a run)."""
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            yield node["_target_"]
        for key, value in node.items():
            if key != "hydra":
                yield from _targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value)


def defaults(cls: type) -> dict[str, Any]:
    """key -> the declared default of each key that has one (a list or dict copied). A class
    whose keys a dataclass declares for it (the sweeper's Settings) names it as DECLARED."""
    cls = getattr(cls, "DECLARED", cls)
    if dataclasses.is_dataclass(cls):
        out = {}
        for f in dataclasses.fields(cls):
            if f.init and f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
            elif f.init and f.default is not dataclasses.MISSING:
                out[f.name] = f.default
        return out
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {
        p.name: p.default
        for p in parameters
        if p.name not in RUNTIME and p.default is not inspect.Parameter.empty
    }


def nodes(conf: Path = CONF) -> dict[str, Any]:
    """`<Class>` -> its node: its `_target_` as conf/ names it (first, so a composed node reads
    as its YAML does; not a default, and the YAML names it too), then its defaults."""
    return {
        cls.__name__: {**({"_target_": t} if t.strip(".") else {}), **_plain(defaults(cls))}
        for t, cls in classes(conf).items()
    }


def text(name: str, node: dict[str, Any], conf: Path = CONF) -> str:
    """conf/declared/<name>.yaml: where the defaults come from, then the node."""

    cls = next(c for c in classes(conf).values() if c.__name__ == name)
    cls = getattr(cls, "DECLARED", cls)
    where = f"{cls.__module__}.{cls.__qualname__}"
    head = (
        f"# {where}'s declared defaults, written by `python -m src.config.declared`.\n"
        "# Do not edit: change the declaration, then run that command again.\n"
    )
    return head + (OmegaConf.to_yaml(OmegaConf.create(node)) if node else "{}\n")


def write(conf: Path = CONF) -> list[str]:
    """conf/declared/<Class>.yaml for every class (files of classes gone removed); the names
    of the files written."""
    folder, found, written = Path(conf) / GROUP, nodes(conf), []
    folder.mkdir(exist_ok=True)
    for name, node in found.items():
        path = folder / f"{name}.yaml"
        if not path.is_file() or path.read_text() != text(name, node, conf):
            path.write_text(text(name, node, conf))
            written.append(path.name)
    for path in folder.glob("*.yaml"):
        if path.stem not in found:
            path.unlink()
            written.append(f"{path.name} (removed)")
    return written


def stale(conf: Path = CONF) -> list[str]:
    """Each conf/declared/ file that is not what its class declares now: one line naming it,
    the first key that differs, and the fix."""
    folder, out = Path(conf) / GROUP, []
    for name, node in nodes(conf).items():
        path = folder / f"{name}.yaml"
        on_disk = load(path) if path.is_file() else None
        if on_disk == node:
            continue
        if on_disk is None:
            what = "missing"
        else:
            key = next(
                k for k in {**node, **on_disk} if on_disk.get(k, ABSENT) != node.get(k, ABSENT)
            )
            what = (
                f"{key}: {_show(on_disk.get(key, ABSENT))}, declared {_show(node.get(key, ABSENT))}"
            )
        out.append(
            f"{path.relative_to(Path(conf).parent)}: {what}; the declaration changed: "
            "run python -m src.config.declared to write it again"
        )
    return out


def _plain(value: Any) -> Any:
    """A value as OmegaConf and JSON take it: tuples and mappings as lists and dicts."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- the guard -----------------------------------------------------------------------------------


def check_current(conf: Path = CONF) -> None:
    """A run's, or an evaluation's, first check: every declaration written as it is now."""

    if found := stale(conf):
        raise UserError(found[0])


def second_homes(conf: Path) -> list[str]:
    """Each value a file of `conf` writes that its class already declares, one line each naming
    the file, the key and the fix. Every group and option is read, a `_shared.yaml` through
    the options that include it and a nested `_target_` node (conf/config.yaml's metrics) by its
    own class; lists count whole, dicts key by key. A value read from elsewhere (`${epochs}`)
    is no home, and a preset of knobs (experiment/, debug/, hparams_search/) pins its values
    on purpose; but a preset's `hydra.sweeper` node is checked against the sweeper it picks (its
    declaration and its option's YAML)."""

    conf, found = Path(conf), []

    def check(path: Path, node: dict, declared: dict, owner: str, prefix: str = "") -> None:
        for key, value in node.items():
            if key in ("defaults", "hydra"):
                continue
            if isinstance(value, dict) and _ours(value.get("_target_")):
                cls = get_class(value["_target_"])
                check(path, value, defaults(cls), value["_target_"], f"{prefix}{key}.")
            elif key not in declared or key.startswith("_"):
                continue
            elif isinstance(value, dict) and isinstance(declared[key], dict):
                check(path, value, declared[key], owner, f"{prefix}{key}.")
            elif _literal(value) and _same(value, declared[key]):
                found.append(
                    f"{path.relative_to(conf.parent)}: {prefix}{key}: {_show(value)} is "
                    f"{owner}'s declared default; delete it here (the declaration is "
                    f"its one home)"
                )

    for top, cls in (("config.yaml", Knobs), ("evaluate.yaml", Evaluation)):
        check(conf / top, load(conf / top), defaults(cls), f"{cls.__module__}.{cls.__name__}")
    for group in sorted(p for p in conf.rglob("*") if p.is_dir() and p.name != GROUP):
        for option in sorted(group.glob("[!_]*.yaml")):
            node = load(option)
            target = node.get("_target_")
            if not _ours(target):
                continue  # a preset of knobs, or a class that declares no defaults of ours
            shared = [
                group / f"{d}.yaml"
                for d in node.get("defaults", [])
                if isinstance(d, str) and (group / f"{d}.yaml").is_file()
            ]
            for path in (*shared, option):
                check(path, load(path), defaults(get_class(target)), target)
    for preset in options(conf):  # a preset's sweeper settings
        node = load(preset)
        sweeper = (node.get("hydra") or {}).get("sweeper")
        chosen = [
            str(next(iter(d.values())))
            for d in node.get("defaults") or []
            if isinstance(d, dict) and "override /hydra/sweeper" in d
        ]
        if isinstance(sweeper, dict) and chosen:
            option = load(conf / "hydra" / "sweeper" / f"{chosen[0]}.yaml")
            target = option.get("_target_")
            own = {k: v for k, v in option.items() if k != "defaults" and _literal(v)}
            declared_ = {**defaults(get_class(target)), **own} if _ours(target) else own
            check(preset, sweeper, declared_, f"hydra/sweeper={chosen[0]}", "hydra.sweeper.")
    return sorted(set(found))


def unstarted(conf: Path) -> list[str]:
    """Each option of ours whose defaults list does not start from its class's declaration:
    one line naming the file and the line to add."""
    found = []
    for option in (p for p in options(conf) if not p.name.startswith("_")):
        node = load(option)
        target = node.get("_target_")
        if _ours(target):
            want = f"/declared/{target.rsplit('.', 1)[-1]}@_here_"
            first = (node.get("defaults") or [None])[0]
            if first != want:
                found.append(
                    f"{option.relative_to(Path(conf).parent)}: its defaults list "
                    f"starts with {first!r}; start it with `- {want}`"
                )
    return found


def load(path: Path) -> dict[str, Any]:
    """A YAML file as Hydra reads it (`1e-4` a number), its interpolations unresolved."""

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}


def _ours(target: Any) -> bool:
    return isinstance(target, str) and target.startswith(OURS)


def _literal(value: Any) -> bool:
    """A value written out, not read (`${...}`) from elsewhere."""
    if isinstance(value, str):
        return "${" not in value
    if isinstance(value, list):
        return all(_literal(v) for v in value)
    return True


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, list | tuple) and isinstance(default, list | tuple):
        return len(value) == len(default) and all(map(_same, value, default))
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default
    if isinstance(value, int | float) and isinstance(default, int | float):
        return float(value) == float(default)
    return value == default


def _show(value: Any) -> str:

    return show(value) if not isinstance(value, list) else f"[{', '.join(map(show, value))}]"


if __name__ == "__main__":
    changed = write()
    print(f"conf/{GROUP}/: " + (", ".join(changed) + " written" if changed else "current"))
