"""What a study optimises (`hydra.sweeper.objectives`), read from each run's metrics.json, and the
Pareto front over it.

    python -m src.run hparams_search=optuna 'hydra.sweeper.objectives=[f1,train_seconds]'

A study optimises the run's metric, the best eval value of `trainer.metric_for_best_model`, and
with `objectives` also what the run cost, each minimized:

    train_seconds          the fit's wall time (evaluation and saving not counted)
    trainable_parameters   the parameters the optimizer updates (frozen layers and LoRA: fewer)
    peak_memory_mb         the run's peak memory, build to test: the CUDA allocator's peak on a
                           GPU, else the process's peak resident set (Linux VmHWM, reset at start)
    latency_ms             milliseconds per test text, as the run scored its test split in batches
                           of trainer.eval_batch_size

hydra-optuna-sweeper's `direction: [maximize, minimize]` names no values (its function returned
a tuple); here each direction follows its objective, and a list of them is checked against it.
Optuna cannot prune a study of several objectives, so one with a pruner is refused. The summary
(src.sweeps.summary) tables and plots the front: the runs no other run beats on every objective.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from src.config.errors import UserError
from src.config.rundir import best_key
from src.tasks.metrics import higher_is_better

COSTS = {  # objective -> where metrics.json keeps it
    "train_seconds": ("train_seconds",),
    "trainable_parameters": ("parameters", "trainable"),
    "peak_memory_mb": ("peak_memory_mb",),
    "latency_ms": ("latency_ms",),
}
KEY = "hydra.sweeper.objectives"


def names_of(objectives: Any, metric: str) -> list[str]:
    """The study's objectives, checked (one line for a name that is not one): [metric] when
    none are given."""
    if objectives is None:
        return [metric]
    names = [objectives] if isinstance(objectives, str) else [str(n) for n in objectives]
    allowed = f"{metric} (trainer.metric_for_best_model), {', '.join(COSTS)}"
    for name in names:
        if name not in COSTS and name != metric:
            chosen = (
                f"; the run chooses its epoch by {metric}: set trainer.metric_for_best_model="
                f"{name} to optimise {name}"
                if not name.startswith(("train", "peak", "latency"))
                else ""
            )
            raise UserError(f"{KEY}: {name} is not an objective; use {allowed}{chosen}")
    if len(set(names)) != len(names) or metric not in names:
        raise UserError(
            f"{KEY}={names}: give the run's metric ({metric}) once, and each cost at most once "
            f"(of {', '.join(COSTS)})"
        )
    return names


def directions_of(names: Sequence[str]) -> list[str]:
    """Each objective's direction: the metric's own (maximize f1, minimize mse), a cost's
    minimize."""
    return [
        "minimize" if name in COSTS or not higher_is_better(name) else "maximize" for name in names
    ]


def check_directions(direction: Any, names: Sequence[str], metric: str) -> list[str]:
    """The study's directions, one per objective: `direction` (hydra-optuna-sweeper's key, a
    word or a list) must agree with what each objective improves in (one line where not)."""
    wanted = directions_of(names)
    given = [direction] if isinstance(direction, str) else list(direction)
    if len(names) == 1 and len(given) > 1:
        raise UserError(
            f"hydra.sweeper.direction={given}: directions for {len(given)} objectives, and a "
            f"run's values name none here; say what each one is, e.g. {KEY}=[{metric},"
            f"train_seconds] (directions then follow them)"
        )
    if len(given) == 1 and len(names) > 1:  # a word: the metric's direction; costs minimize
        given = [given[0] if n == metric else w for n, w in zip(names, wanted, strict=True)]
    if len(given) != len(names):
        raise UserError(
            f"hydra.sweeper.direction={given}: {len(given)} directions for {len(names)} "
            f"objectives ({KEY}={list(names)}); give one each, or leave direction to them"
        )
    for name, have, want in zip(names, given, wanted, strict=True):
        if have != want:
            better = "better higher" if want == "maximize" else "better lower"
            what = (
                f"the best eval {name} (trainer.metric_for_best_model)"
                if name == metric
                else f"{name}, a cost"
            )
            raise UserError(
                f"hydra.sweeper.direction={direction}: the study optimises {what}, which is "
                f"{better}; set {want}, or leave it to hparams_search=optuna (it follows the "
                "objectives)"
            )
    return wanted


def values_of(metrics: dict, names: Sequence[str], metric: str) -> list[float | None]:
    """Each objective's value in a run's metrics.json (None where the run did not measure it)."""
    found = []
    for name in names:
        value: Any = metrics
        for key in COSTS.get(name, (best_key(metric),)):
            value = value.get(key) if isinstance(value, dict) else None
        found.append(None if value is None else float(value))
    return found


def shown(name: str, value: float) -> str:
    """A value as the summary prints it: a cost in its own unit, a metric to 4 decimals."""
    if name == "trainable_parameters":
        return f"{value:,.0f}"
    if name in COSTS:
        return f"{value:.1f}" if value >= 100 else f"{value:.3g}"
    return f"{value:.4f}"


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the points no other point beats: at least as good on every objective and
    better on one (directions: maximize or minimize each)."""
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]
    costs = [[s * v for s, v in zip(signs, p, strict=True)] for p in points]

    def beats(a: list[float], b: list[float]) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    usable = [i for i, c in enumerate(costs) if all(math.isfinite(v) for v in c)]
    return [i for i in usable if not any(beats(costs[j], costs[i]) for j in usable)]
