"""Composition: every option of every group (nested folders too) composes and resolves."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import group_options


def test_groups_exist():
    groups = {o.split("=")[0] for o in group_options()}
    assert {"dataset", "backbone", "model", "trainer", "optimizer", "scheduler", "logger"} <= groups


@pytest.mark.parametrize("override", group_options())
def test_every_option_composes_and_resolves(compose_cfg, override):
    cfg = compose_cfg(override)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    group, option = override.split("=")
    if group in ("dataset", "backbone", "model", "trainer", "optimizer", "scheduler", "logger"):
        assert "_target_" in resolved[group]


def test_knobs_reach_groups(compose_cfg):
    cfg = compose_cfg("lr=3e-5", "epochs=2", "batch_size=4", "seed=7", "dropout=0.25")
    assert cfg.optimizer.lr == 3e-5
    assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.trainer.seed) == (2, 4, 7)
    assert cfg.model.dropout == 0.25


@pytest.mark.parametrize("model", ["custom_head", "hf_head"])
def test_dropout_knob_builds_into_the_head(compose_cfg, model):
    cfg = compose_cfg(f"model={model}", "dropout=0.3", "backbone=tiny")
    backbone = instantiate(cfg.backbone)
    built = instantiate(cfg.model).build(backbone, {0: "neg", 1: "pos"})
    assert built.dropout.p == 0.3


def test_runtime_values_are_not_in_yaml(compose_cfg):
    """num_labels / id2label come from the data, model parameters from the run."""
    text = OmegaConf.to_yaml(compose_cfg("model=custom_head"))
    for key in ("num_labels", "id2label", "num_training_steps", "params"):
        assert key not in text


def test_a_config_is_composed_once_per_state_of_conf(tmp_path, monkeypatch):
    """The same overrides over unchanged files reuse the first composition (Hydra is not asked
    again), each caller gets its own copy, and an edited file composes anew."""
    import shutil

    from src.config import compose as composing

    conf = shutil.copytree(composing.CONF, tmp_path / "conf")
    calls = []
    real = composing.hydra_compose
    monkeypatch.setattr(composing, "hydra_compose", lambda **kw: calls.append(kw) or real(**kw))
    first = composing.compose(["debug=smoke"], conf)
    first.trainer.epochs = 99  # a caller's change stays its own
    second = composing.compose(["debug=smoke"], conf)
    assert len(calls) == 1 and second.trainer.epochs == 1 and second is not first
    smoke = conf / "debug" / "smoke.yaml"
    smoke.write_text(smoke.read_text().replace("max_length: 64", "max_length: 48"))
    assert composing.compose(["debug=smoke"], conf).max_length == 48 and len(calls) == 2
    composing.compose(["debug=smoke"], conf, hydra=True)  # Hydra's node: composed every time
    composing.compose(["debug=smoke"], conf, hydra=True)
    assert len(calls) == 4
