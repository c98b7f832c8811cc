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
