"""Hydra's entry to src/sweeps/study.py (Hydra loads sweepers only from the hydra_plugins package).

conf/hydra/sweeper/optuna.yaml names this class; `hparams_search=optuna` selects it."""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper

from src.sweeps.study import Settings, run_study


class OptunaSweeper(Sweeper):
    """An Optuna study as a sweep: src.sweeps.study.run_study asks, launches and tells."""

    DECLARED = Settings  # its keys and their defaults (src.config.declared composes them)

    def __init__(self, **settings: Any) -> None:
        self.settings = Settings(**settings)
        self.config = self.launcher = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:

        return run_study(self.settings, self.config, self.launcher, arguments)
