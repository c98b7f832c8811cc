"""The composed config of `python -m src.run OVERRIDES`, outside a Hydra run (no torch here).

For the checks and tools that need the config before or beside a run: the override preflight,
the benchmark, the tests and the golden snapshots.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

CONF = Path(__file__).resolve().parents[2] / "conf"


def options(group: str, conf: Path = CONF) -> list[str]:
    """A group's options: its YAML files, less the private ones (`_shared.yaml`, which every
    option of the group includes, is no option of its own)."""
    return sorted(p.stem for p in (conf / group).glob("*.yaml") if not p.stem.startswith("_"))


def group_lines(conf: Path = CONF, only: tuple[str, ...] = ()) -> str:
    """`group: option, ...` for each group of conf/ (Hydra's own groups aside), or for the
    groups `only` names: what `--help` lists (resolver `project_groups`, in
    conf/hydra/help/project.yaml; src.evaluate's `${project_groups:dataset}`)."""
    groups = only or sorted(
        p.name for p in conf.iterdir() if p.is_dir() and p.name not in ("hydra", "declared")
    )
    return "\n".join(f"{g}: {', '.join(options(g, conf))}" for g in groups if options(g, conf))


# Composed configs by their arguments and the state of conf/'s files: the checks of one command
# (preflight, validation, the review's presets) and the tests compose the same ones again and
# again, at ~0.2 s each. Hydra's own node (`hydra`: the run's cwd, its time) is never kept, nor
# a config whose search path reaches files outside conf/.
_COMPOSED: dict[tuple, DictConfig] = {}
_KEPT = 256


def compose(
    overrides: list[str], conf: Path = CONF, hydra: bool = False, config_name: str = "config"
) -> DictConfig:
    """conf/<config_name>.yaml (conf/config.yaml: a run's) with `overrides` applied (and Hydra's
    own node, with `hydra`); Hydra's global state is left clear. Each call returns its own
    copy, whoever composed the same before."""
    keep = not hydra and not any("searchpath" in o for o in overrides)
    key = (tuple(overrides), str(conf), config_name, _files_state(conf)) if keep else None
    if key in _COMPOSED:
        return copy.deepcopy(_COMPOSED[key])
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = hydra_compose(
                config_name=config_name, overrides=overrides, return_hydra_config=hydra
            )
    finally:
        GlobalHydra.instance().clear()
    if key is not None:
        if len(_COMPOSED) >= _KEPT:
            _COMPOSED.clear()
        _COMPOSED[key] = copy.deepcopy(cfg)
    return cfg


def _files_state(conf: Path) -> tuple:
    """Every file under `conf` with its size and modification time: a file edited, added or
    removed composes anew."""
    return tuple(
        (str(p), st.st_size, st.st_mtime_ns)
        for p in sorted(Path(conf).rglob("*"))
        if p.is_file() and (st := p.stat())
    )


def sources(overrides: list[str], conf: Path = CONF, config_name: str = "config") -> list[str]:
    """The files of `conf` that composing `overrides` reads, as `<group>/<option>`, and the
    declarations it reads, as `declared/<Class>` (Hydra's defaults list; its own built-in
    configs left out): which presets a changed file or default reaches."""

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            found = (
                GlobalHydra.instance()
                .config_loader()
                .compute_defaults_list(config_name, overrides, RunMode.RUN)
            )
    finally:
        GlobalHydra.instance().clear()
    paths = (d.config_path for d in found.defaults if d.config_path)
    return [
        p
        for p in dict.fromkeys(paths)
        if (conf / f"{p}.yaml").is_file() or p.startswith("declared/")
    ]


# --help lists each group's options, its private _shared.yaml left out (Hydra's own list has it);
# registered wherever a config composes, so the hydra node resolves in tools and tests too
OmegaConf.register_new_resolver(
    "project_groups", lambda *only: group_lines(only=only), replace=True
)


def study_name(dataset, task: str, backbone: str, model: str, params, objectives=None) -> str:
    """hparams_search=optuna's study: named after the dataset it tunes on, and a fingerprint of
    the dataset, the task, backbone, head, the search space and the objectives (when given),
    so that another dataset or search starts a study of its own instead of resuming one with
    other trials in it. Cached (as `${now:}` is), so every trial of a sweep resolves the name
    the sweep started with."""

    def plain(node):
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    params = plain(params) or {}
    dataset = {k: v for k, v in (plain(dataset) or {}).items() if f"dataset.{k}" not in params}
    fixed = {
        "dataset": dataset,
        "params": params,
        "task": task,
        "backbone": backbone,
        "model": model,
    }
    if objectives is not None:  # a study of the metric alone keeps its earlier name
        fixed["objectives"] = plain(objectives)
    digest = hashlib.sha1(json.dumps(fixed, sort_keys=True, default=str).encode()).hexdigest()
    where = dataset.get("train_file") or dataset.get("path") or dataset.get("name")
    target = str(dataset.get("_target_", "")).rsplit(".", 1)[-1]
    label = Path(str(where)).stem if where else {"MovieReviews": "movie_reviews"}.get(target)
    return f"{label or target or 'dataset'}-{digest[:8]}"


OmegaConf.register_new_resolver("study_name", study_name, replace=True, use_cache=True)


def direction_of(metric: str) -> str:
    """hparams_search=optuna's `direction: ${direction_of:${trainer.metric_for_best_model}}`:
    the metric's own way, maximize (f1) or minimize (mse), as src.tasks.metrics declares it
    (named by its dotted path, as a `_target_` names a component)."""

    higher = get_method("src.tasks.metrics.higher_is_better")(str(metric))
    return "maximize" if higher else "minimize"


OmegaConf.register_new_resolver("direction_of", direction_of, replace=True)

NAME_BYTES = 200  # a job folder's name at most (filesystems allow 255 bytes per name)


def job_dir(name: str) -> str:
    """A sweep job's folder name (hydra.sweep.subdir): the overrides as Hydra writes them when
    they fit, else their start and a stable hash of the whole (the same overrides, the same
    folder: resume=auto finds it). Each job's .hydra/overrides.yaml holds them all."""

    parts = str(name).split("/")  # a value with a slash nests folders: each part must fit
    return "/".join(_fit(p, hashlib.sha1(p.encode()).hexdigest()[:10]) for p in parts)


def _fit(part: str, digest: str) -> str:
    data = part.encode()
    if len(data) <= NAME_BYTES:
        return part
    return f"{data[: NAME_BYTES - len(digest) - 1].decode(errors='ignore')}~{digest}"


OmegaConf.register_new_resolver("job_dir", job_dir, replace=True)
