"""One home per default (src/config/declared.py): every option of every group starts from its
class's declaration and writes only what it sets otherwise; the guard names a value written in both
places, lists and dicts included, in any group, `_shared.yaml` and conf/config.yaml too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from src.config import declared
from src.config.compose import compose
from tests.conftest import CONF, group_options


def test_no_default_has_a_second_home_and_every_option_starts_from_its_declaration():
    assert declared.second_homes(CONF) == []
    assert declared.unstarted(CONF) == []


@pytest.fixture(scope="module")
def conf_copy(tmp_path_factory) -> Path:
    return Path(shutil.copytree(CONF, tmp_path_factory.mktemp("conf") / "conf"))


@pytest.mark.parametrize(
    ("path", "line", "named"),
    [
        (
            "trainer/_shared.yaml",
            "min_steps: 150",
            "trainer/_shared.yaml: min_steps: 150 is "
            "src.trainers.ManualTrainerConfig's declared default; delete it here",
        ),
        (
            "optimizer/adamw.yaml",
            "betas: [0.9, 0.999]",
            "adamw.yaml: betas: [0.9, 0.999] is src.trainers.optim.AdamW's declared default",
        ),  # a list
        (
            "model/_shared.yaml",
            "lora:\n  r: 8\n  alpha: 32",
            "model/_shared.yaml: lora.r: 8 is src.models.CustomHead's declared default",
        ),  # a dict, key by key (alpha 32 differs)
        ("config.yaml", "seed: 42", "conf/config.yaml: seed: 42 is src.config.knobs.Knobs's"),
        (
            "config.yaml",
            "metrics:\n  _target_: src.tasks.metrics.Metrics\n  extra: []",
            "conf/config.yaml: metrics.extra: [] is src.tasks.metrics.Metrics's",
        ),  # a nested node
        (
            "scheduler/cosine.yaml",
            "warmup_ratio: 0.1",
            "cosine.yaml: warmup_ratio: 0.1 is src.trainers.optim.Schedule's",
        ),
        (
            "logger/wandb.yaml",
            "entity: null",
            "wandb.yaml: entity: null is src.trainers.loggers.wandb.WandbLogger's",
        ),  # an __init__'s default
        (
            "evaluate.yaml",
            "batch_size: 32",
            "conf/evaluate.yaml: batch_size: 32 is src.config.knobs.Evaluation's",
        ),
        (
            "hydra/sweeper/optuna.yaml",
            "n_trials: 20",
            "hydra/sweeper/optuna.yaml: n_trials: 20 is "
            "hydra_plugins.src_sweepers.optuna_sweeper.OptunaSweeper's declared default",
        ),  # the sweeper's settings (src/sweeps/study.py Settings)
        (
            "hparams_search/optuna.yaml",
            "    n_jobs: 1",
            "hparams_search/optuna.yaml: hydra.sweeper.n_jobs: 1 is hydra/sweeper=optuna's",
        ),  # a preset's hydra.sweeper node, against the sweeper it picks
    ],
    ids=[
        "shared",
        "list",
        "dict",
        "knob",
        "nested",
        "scheduler",
        "logger",
        "evaluate",
        "sweeper",
        "preset's sweeper",
    ],
)
def test_the_guard_names_a_reintroduced_second_home(conf_copy, path, line, named):
    file = conf_copy / path
    text = file.read_text()
    try:
        if path == "config.yaml" and line.startswith("metrics:"):
            file.write_text(text.replace("metrics:", "unused_metrics:", 1) + line + "\n")
        else:
            file.write_text(text + line + "\n")
        found = declared.second_homes(conf_copy)
    finally:
        file.write_text(text)
    assert len([f for f in found if named in f]) >= 1, found
    assert all(f.startswith("conf/") and "delete it here" in f for f in found), found


def test_an_option_that_skips_its_declaration_is_named(conf_copy):
    file = conf_copy / "scheduler" / "cosine.yaml"
    text = file.read_text()
    try:
        file.write_text(text.replace("  - /declared/Schedule@_here_\n", ""))
        assert declared.unstarted(conf_copy) == [
            "conf/scheduler/cosine.yaml: its defaults list starts with '_self_'; start it with "
            "`- /declared/Schedule@_here_`"
        ]
    finally:
        file.write_text(text)


def _with_data(override: str) -> list[str]:
    return [override, *(["dataset=files"] if override.startswith("task=") else [])]


@pytest.mark.parametrize(
    "override",
    [
        o
        for o in group_options()
        if o.split("=")[0] not in ("experiment", "debug", "hparams_search")
    ],
)
def test_every_option_composes_every_declared_key_from_its_one_home(override):
    """Each declared key is in the composed node, at its declared value unless the option's
    own YAML (or its `_shared.yaml`) writes another: so `python -m src.spec` shows what a run
    uses, and no key needs `+` to be overridden."""
    group, option = override.split("=")
    node = OmegaConf.to_container(compose(_with_data(override))[group], resolve=False)
    written = {}
    for path in (CONF / group / "_shared.yaml", CONF / group / f"{option}.yaml"):
        if path.is_file():
            written.update(declared.load(path))
    for key, value in declared.defaults(get_class(node["_target_"])).items():
        assert key in node, (override, key)
        if key not in written:
            assert node[key] == declared._plain(value), (override, key)
    knobs = OmegaConf.to_container(compose([]), resolve=False)
    assert all(knobs[k] == v for k, v in declared.nodes()["Knobs"].items())


def test_a_changed_declaration_is_written_once_and_read_by_every_option(conf_copy, monkeypatch):
    """A default changed in the code: its written file is stale (one line naming it and the
    command), `write` rewrites that file alone, and every option reads the new value from it
    with no YAML edit."""
    from src.trainers.optim import AdamW

    assert declared.stale(conf_copy) == [] and declared.write(conf_copy) == []
    monkeypatch.setattr(AdamW.__dataclass_fields__["weight_decay"], "default", 0.05)
    assert declared.stale(conf_copy) == [
        "conf/declared/AdamW.yaml: weight_decay: 0.01, declared 0.05; the declaration changed: "
        "run python -m src.config.declared to write it again"
    ]
    with pytest.raises(declared_error(), match="AdamW.yaml: weight_decay: 0.01, declared 0.05"):
        declared.check_current(conf_copy)
    assert declared.write(conf_copy) == ["AdamW.yaml"]
    assert declared.stale(conf_copy) == []
    assert compose(["debug=smoke"], conf=conf_copy).optimizer.weight_decay == 0.05
    assert compose(["optimizer=sgd"], conf=conf_copy).optimizer.weight_decay == 0.0


def declared_error():
    from src.config.errors import UserError

    return UserError


def test_every_declaration_is_written_as_it_is_now():
    assert declared.stale() == []
