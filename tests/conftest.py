"""Shared fixtures: Hydra's compose API over conf/, the real corpus, outputs in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_NLTK = ROOT.parent / "shared" / "nltk_data"

if "NLTK_DATA" not in os.environ and SHARED_NLTK.is_dir():
    os.environ["NLTK_DATA"] = str(SHARED_NLTK)


def group_options() -> list[str]:
    """`group=option` for every YAML under conf/<group>/, nested groups as `a/b=option`."""
    out = []
    for path in sorted(CONF.rglob("*.yaml")):
        rel = path.relative_to(CONF)
        if len(rel.parts) < 2 or rel.parts[0] == "hydra":
            continue
        out.append(f"{rel.parent.as_posix()}={rel.stem}")
    return out


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    """compose_cfg("model=custom_head", ...) -> the composed config; Hydra state cleared after."""

    def _compose(*overrides: str) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: int = 300):
    """`python -m src.run ARGS` as a user types it; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "src.run", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny finished runs shared by the predict, report and logger tests, keyed by model:
    hf_head under trainer=hf (1 epoch), custom_head under trainer=manual (2 epochs), both
    with logger=tensorboard."""
    from src.run import train

    runs = {}
    for model, trainer, epochs in (("hf_head", "hf", 1), ("custom_head", "manual", 2)):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(
                config_name="config",
                overrides=[
                    "debug=smoke",
                    f"model={model}",
                    f"trainer={trainer}",
                    f"epochs={epochs}",
                    "logger=tensorboard",
                ],
            )
        GlobalHydra.instance().clear()
        runs[model] = tmp_path_factory.mktemp(model)
        train(cfg, runs[model])
    return runs
