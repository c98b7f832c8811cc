"""A `custom_search_space` as hydra-optuna-sweeper documents one: `configure(cfg, trial)`
suggests more parameters after the search space's (here one bounded by another)."""

from __future__ import annotations

from typing import Any


def warmup_below_lr(cfg: Any, trial: Any) -> None:
    """The warm-up share, at most 1000 x the trial's lr (a bound that depends on a drawn value)."""
    trial.suggest_float("scheduler.warmup_ratio", 0.0, min(0.2, 1000 * trial.params["lr"]))
