"""logger=mlflow: what a run and a sweep leave in an MLflow store, read back with MlflowClient
(a sweep's one experiment: tests/test_sweeps.py, the 2x2 sweep).

Offline: every store is a sqlite file in tmp_path.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml

from src.config.compose import compose
from src.config.errors import Preempted, UserError
from src.config.rundir import flatten
from src.run import train
from src.trainers.loggers.mlflow import MLFLOW_ARTIFACTS_DIR, MLflowLogger, local_store, sweep_of
from tests.conftest import ROOT
from tests.test_loggers import EXPECTED_TAGS

ARTIFACTS = {
    "report.md",
    "confusion_matrix.png",
    "learning_curve.png",
    "config_resolved.yaml",
    "classification_report.txt",
}
TEST_METRICS = {f"test/{m}{end}" for m in ("accuracy", "f1") for end in ("", "_ci95_low")}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, dict[str, Path]]:
    """Two tiny runs in one sqlite store: trainer=manual over 2 epochs, trainer=hf over 1."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'm.db'}"
    runs = {}
    for trainer, epochs in (("manual", 2), ("hf", 1)):
        runs[trainer] = root / trainer
        overrides = [f"trainer={trainer}", f"epochs={epochs}", f"logger.tracking_uri={uri}"]
        train(compose(["debug=smoke", "logger=mlflow", *overrides]), runs[trainer])
    return uri, runs


def recorded(uri: str, name: str):
    """The one MLflow run named `name` in the single runs' experiment."""
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(MLflowLogger.SINGLE_RUNS)
    runs = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{name}'")
    assert len(runs) == 1
    return client, runs[0]


@pytest.mark.parametrize("trainer", ["manual", "hf"])
def test_a_run_records_params_scalars_test_metrics_and_artifacts(store, trainer):
    uri, runs = store
    run_dir = runs[trainer]
    client, run = recorded(uri, trainer)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith((run_dir.parent / MLFLOW_ARTIFACTS_DIR).as_uri())

    config = flatten(yaml.safe_load((run_dir / "config_resolved.yaml").read_text()))
    assert run.data.params == {k: str(v) for k, v in config.items()}
    assert run.data.params["lr"] == "0.001"
    assert run.data.params["logger._target_"] == "src.trainers.loggers.mlflow.MLflowLogger"

    metrics = json.loads((run_dir / "metrics.json").read_text())
    accuracy = client.get_metric_history(run.info.run_id, "eval/accuracy")
    assert [m.step for m in accuracy] == [r["step"] for r in metrics["history"]]
    assert len(accuracy) == {"manual": 2, "hf": 1}[trainer]  # one point per epoch
    assert [m.value for m in accuracy] == pytest.approx([r["accuracy"] for r in metrics["history"]])
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in losses] == [r["step"] for r in metrics["train_log"]]
    assert [m.value for m in losses] == pytest.approx([r["loss"] for r in metrics["train_log"]])
    for name, value in metrics["test"].items():
        low, high = metrics["test_ci95"][name]
        assert run.data.metrics[f"test/{name}"] == pytest.approx(value)
        assert run.data.metrics[f"test/{name}_ci95_low"] == pytest.approx(low)
        assert run.data.metrics[f"test/{name}_ci95_high"] == pytest.approx(high)

    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= ARTIFACTS
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert run.data.tags["mlflow.source.git.commit"] == head.stdout.strip()
    assert run.data.tags["run_dir"] == str(run_dir)


def test_both_trainers_log_the_same_names(store):
    uri, _ = store
    manual = set(recorded(uri, "manual")[1].data.metrics)
    hf = set(recorded(uri, "hf")[1].data.metrics)
    assert EXPECTED_TAGS | TEST_METRICS <= manual <= hf  # hf adds grad_norm, eval/loss, timings


@pytest.mark.parametrize(
    "error, status", [(RuntimeError("boom"), "FAILED"), (Preempted("c"), "KILLED")]
)
def test_a_run_that_raises_ends_failed_or_killed(store, tmp_path, error, status):
    uri = store[0]  # a store made already: a new sqlite store takes seconds to set up
    logger = MLflowLogger(tmp_path / "run", uri)
    with pytest.raises(type(error)):
        try:
            logger.log({"train/loss": 1.0}, 1)
            raise error
        finally:
            logger.close()
    logger.close()  # once ended, a run stays as it ended
    assert mlflow.MlflowClient(uri).get_run(logger.run_id).info.status == status


def test_an_experiment_made_meanwhile_is_joined(tmp_path, monkeypatch):
    """Parallel jobs of a sweep race to make their experiment; the loser joins it."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    made = mlflow.MlflowClient(uri).create_experiment(MLflowLogger.SINGLE_RUNS)
    looks = []
    real = mlflow.MlflowClient.get_experiment_by_name

    def late(self, name):  # the first look comes before the other job made it
        looks.append(name)
        return None if len(looks) == 1 else real(self, name)

    monkeypatch.setattr(mlflow.MlflowClient, "get_experiment_by_name", late)
    logger = MLflowLogger(tmp_path / "run", uri)
    assert logger.experiment_id == made and len(looks) == 2
    logger.close()  # it never logged: no run to end, none made
    assert mlflow.MlflowClient(uri).search_runs([made]) == []


def test_a_sqlite_store_is_opened_one_process_at_a_time(tmp_path):
    """MLflow makes a new store's tables without a lock: parallel jobs (hydra/launcher=joblib)
    on a new file failed with `table _alembic_tmp_experiments already exists`."""
    import fcntl
    import threading

    db = tmp_path / "m.db"
    opening = threading.Thread(target=MLflowLogger, args=(tmp_path / "run", f"sqlite:///{db}"))
    with open(f"{db}.lock", "w") as held:  # another job is opening the store
        fcntl.flock(held, fcntl.LOCK_EX)
        opening.start()
        opening.join(timeout=3)
        assert opening.is_alive() and not db.exists()  # it waits its turn
    opening.join(timeout=120)
    assert not opening.is_alive() and db.exists()


def test_a_relative_sqlite_store_resolves_with_its_artifacts_beside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, db = local_store("sqlite:///outputs/mlflow.db")
    assert (
        uri == f"sqlite:///{tmp_path}/outputs/mlflow.db"
        and db == tmp_path / "outputs" / "mlflow.db"
    )
    assert (tmp_path / "outputs").is_dir()  # made before the store opens
    logger = MLflowLogger(tmp_path / "run", "sqlite:///outputs/mlflow.db")
    assert logger.artifact_location == (tmp_path / "outputs" / MLFLOW_ARTIFACTS_DIR).as_uri()
    assert local_store("http://mlflow.example:5000") == ("http://mlflow.example:5000", None)


def test_a_job_folder_nested_by_its_subdir_still_finds_its_sweep(tmp_path):
    hydra = {
        "mode": "MULTIRUN",
        "sweep": {
            "dir": "${now:%H-%M-%S}",
            "subdir": "${hydra.job.num}/${hydra.job.override_dirname}",
        },
        "job": {"num": 3, "override_dirname": "data=a/b.csv"},
    }
    job = tmp_path / "sweep" / "3" / "data=a" / "b.csv"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
    assert sweep_of(job) == (tmp_path / "sweep").as_posix()
    hydra["mode"] = "RUN"
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
    assert sweep_of(job) is None


def test_the_tracking_uri_comes_from_the_environment(compose_cfg, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert compose_cfg("logger=mlflow").logger.tracking_uri == "sqlite:///outputs/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert compose_cfg("logger=mlflow").logger.tracking_uri == "http://mlflow.example:5000"


def test_without_mlflow_installed_a_one_line_error(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a)
    )
    with pytest.raises(UserError, match="logger=mlflow needs the mlflow package: pip install"):
        MLflowLogger(tmp_path, "sqlite:///unused.db")
