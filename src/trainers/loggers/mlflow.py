"""`logger=mlflow`: one MLflow run per run folder, in the store at `logger.tracking_uri`.

Beside the logger: the sqlite store's location and its lock, the sweep a job belongs to, and
the git commit, overrides and params a run is tagged with (read from the run folder).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.config.errors import Preempted, UserError
from src.config.rundir import HYDRA_DIR, locked, read_config, read_overrides

log = logging.getLogger(__name__)

MLFLOW_ARTIFACTS_DIR = "mlartifacts"  # beside a sqlite store: what `mlflow server` calls it


class MLflowLogger:
    """`logger=mlflow`: one MLflow run per run folder (per attempt), in the store at
    `tracking_uri`.

    Params: the flattened resolved config (config_resolved.yaml, which src.run writes before
    the logger is built). Metrics: the tags of src.trainers.loggers at their steps, then
    `test/<metric>`
    and its `_ci95_low`/`_high`. Artifacts: the files the run hands `finish` (report.md, the
    PNGs, the resolved config and the classification report). Tags: the git commit, Hydra's
    overrides, the run folder. The jobs of a sweep share one experiment named after the sweep
    folder, so the UI compares them; single runs share `runs`. The experiment is looked up at
    once (a wrong URI fails before training); the run starts on first use, so a run that fails
    while it is built leaves no MLflow run.
    """

    SINGLE_RUNS = "runs"  # the experiment of the runs outside a sweep
    HELP: ClassVar[dict[str, str]] = {  # each argument's help line (`python -m src.spec logger`)
        "tracking_uri": "the MLflow store: MLFLOW_TRACKING_URI, else a local sqlite file "
        "(artifacts in outputs/mlartifacts); a team server: http://host:5000",
        "experiment_name": "null: the sweep folder for a sweep's jobs, `runs` for single runs",
    }

    def __init__(
        self, run_dir: Path, tracking_uri: str, experiment_name: str | None = None
    ) -> None:
        if importlib.util.find_spec("mlflow") is None:
            raise UserError("logger=mlflow needs the mlflow package: pip install mlflow")
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        self.run_dir = Path(run_dir)
        self.tracking_uri, db = local_store(tracking_uri)
        self.artifact_location = (db.parent / MLFLOW_ARTIFACTS_DIR).as_uri() if db else None
        self.experiment_name = experiment_name or sweep_of(self.run_dir) or self.SINGLE_RUNS
        try:
            with one_at_a_time(db):
                self.client = MlflowClient(tracking_uri=self.tracking_uri)
                self.experiment_id = self._experiment_id()
        except MlflowException as e:
            reason = str(e).strip().splitlines()[0]
            raise UserError(f"logger.tracking_uri={tracking_uri}: {reason}") from None
        self._run_id: str | None = None
        self._ended = False

    def _experiment_id(self) -> str:
        """The experiment's id, made if new: parallel jobs of a sweep may race to make it."""
        from mlflow.exceptions import MlflowException

        name = self.experiment_name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return self.client.create_experiment(name, self.artifact_location)
            except MlflowException as e:
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = self.client.get_experiment_by_name(name)
        if experiment.lifecycle_stage != "active":
            raise UserError(
                f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore "
                f"--experiment-id {experiment.experiment_id}) or set logger.experiment_name"
            )
        return experiment.experiment_id

    @property
    def run_id(self) -> str:
        """The MLflow run, started with its tags and params on first use."""
        if self._run_id is None:
            from mlflow.entities import Param
            from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH

            run = self.client.create_run(
                self.experiment_id, run_name=self.run_dir.name, tags=run_tags(self.run_dir)
            )
            self._run_id = run.info.run_id
            rows = [Param(k, v) for k, v in run_params(self.run_dir).items()]
            for i in range(0, len(rows), MAX_PARAMS_TAGS_PER_BATCH):  # MLflow caps a batch
                self.client.log_batch(self._run_id, params=rows[i : i + MAX_PARAMS_TAGS_PER_BATCH])
            log.info(f"mlflow: run {self._run_id} in experiment {self.experiment_name!r}")
        return self._run_id

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(tag, float(value), now, step) for tag, value in scalars.items()]
        self.client.log_batch(self.run_id, metrics=rows)

    def finish(self, metrics: Mapping[str, Any], artifacts: Sequence[Path] = ()) -> None:
        """The test metrics and their intervals, the run's files as artifacts; FINISHED."""
        test = {f"test/{k}": v for k, v in metrics.get("test", {}).items()}
        for name, (low, high) in metrics.get("test_ci95", {}).items():
            test[f"test/{name}_ci95_low"], test[f"test/{name}_ci95_high"] = low, high
        self.log(test, step=0)
        for path in artifacts:
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, "FINISHED")
        self._ended = True

    def close(self) -> None:
        """End a run `finish` did not: KILLED when preempted or interrupted, FAILED on another
        exception (src.run.train closes loggers in a `finally`: the one in flight), FINISHED
        without one (a caller that stops training on purpose)."""
        if self._run_id is None or self._ended:
            return
        error = sys.exc_info()[1]
        status = "FINISHED" if error is None else "FAILED"
        if isinstance(error, KeyboardInterrupt | Preempted):
            status = "KILLED"
        self._ended = True
        try:
            self.client.set_terminated(self._run_id, status)
        except Exception as e:  # never hide the exception that ended the run
            log.warning(f"mlflow: could not mark run {self._run_id} {status}: {e}")


def local_store(tracking_uri: str) -> tuple[str, Path | None]:
    """A sqlite store's URI made absolute and its file, whose folder is made; another store's
    URI as given, and None. MLflow would put a sqlite store's artifacts in ./mlruns wherever a
    run starts: they go beside the file instead."""
    prefix = "sqlite:///"
    path, _, query = tracking_uri.removeprefix(prefix).partition("?")
    if not tracking_uri.startswith(prefix) or path in ("", ":memory:"):
        return tracking_uri, None
    db = Path(path).expanduser().resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"{prefix}{db.as_posix()}" + (f"?{query}" if query else ""), db


def one_at_a_time(db: Path | None):
    """One process at a time opens a sqlite store (a lock file beside it): MLflow makes a new
    store's tables unlocked, and the parallel jobs of a sweep would collide on a new file."""
    return contextlib.nullcontext() if db is None else locked(Path(f"{db}.lock"))


def sweep_of(run_dir: Path) -> str | None:
    """A sweep's job: its sweep folder (relative to the working directory when inside it), as
    Hydra recorded the job in the run folder; None for a single run. The job's folder name
    (`hydra.sweep.subdir`, resolved) says how far up the sweep folder is: a value with a slash
    nests it."""

    hydra_file = run_dir / HYDRA_DIR / "hydra.yaml"
    if not hydra_file.is_file():
        return None
    hydra = OmegaConf.load(hydra_file).get("hydra") or {}
    if hydra.get("mode") != "MULTIRUN":
        return None
    try:
        depth = len(Path(str(hydra.sweep.subdir)).parts)
    except OmegaConfBaseException:  # a subdir made with a resolver only Hydra has
        depth = 1
    sweep, here = run_dir.resolve().parents[max(depth, 1) - 1], Path.cwd()
    return (sweep.relative_to(here) if sweep.is_relative_to(here) else sweep).as_posix()


def run_tags(run_dir: Path) -> dict[str, str]:
    """The git commit (MLflow's own tag, which the UI shows), Hydra's overrides and the run
    folder."""
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    tags = {"run_dir": str(run_dir.resolve())}
    commit = git_commit()
    if commit:
        tags[MLFLOW_GIT_COMMIT] = commit
    tags["overrides"] = " ".join(read_overrides(run_dir))
    return {k: v[:MAX_TAG_VAL_LENGTH] for k, v in tags.items() if v}


def run_params(run_dir: Path) -> dict[str, str]:
    """config_resolved.yaml as dotted keys, each value cut to MLflow's length limit."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    return {k: str(v)[:MAX_PARAM_VAL_LENGTH] for k, v in read_config(run_dir).items() if k}


def git_commit() -> str | None:
    """HEAD of the checkout this code runs from; None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
