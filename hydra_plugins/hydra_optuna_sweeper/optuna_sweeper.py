"""hydra-optuna-sweeper's class path, for configs written for that plugin.

lightning-hydra-template's `hparams_search` files and the plugin's own examples name
`hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper` as the sweeper's `_target_`;
here it is the project's sweeper (hydra_plugins/src_sweepers, src/sweeps/study.py), which reads
the same keys. Hydra finds a sweeper by the path its class is defined under, so the class is
defined here too. The plugin itself pins Optuna below 3 and cannot be installed beside this
project.
"""

from hydra_plugins.src_sweepers import optuna_sweeper


class OptunaSweeper(optuna_sweeper.OptunaSweeper):
    """The project's Optuna sweeper under hydra-optuna-sweeper's name."""
