"""The composed config of `python -m src.run OVERRIDES`, outside a Hydra run (no torch here).

For the checks and tools that need the config before or beside a run: the override preflight,
the benchmark, the tests and the golden snapshots.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def compose(overrides: list[str], conf: Path = CONF, hydra: bool = False,
            config_name: str = "config") -> DictConfig:  # fmt: skip
    """conf/<config_name>.yaml (conf/config.yaml: a run's) with `overrides` applied (and Hydra's
    own node, with `hydra`); Hydra's global state is left clear."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            return hydra_compose(
                config_name=config_name, overrides=overrides, return_hydra_config=hydra
            )
    finally:
        GlobalHydra.instance().clear()
