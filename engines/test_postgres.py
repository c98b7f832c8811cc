"""On a real PostgreSQL server (15, a throwaway cluster engines/run.sh starts): one Optuna
study shared by commands, a worker killed mid-trial, and MLflow's backend store, through the
driver the docs and pyproject's [postgres] extra name (psycopg 3; `postgresql://` is its URL
under SQLAlchemy 2.1)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

from tests.conftest import ROOT, run_cli

ALWAYS_PRUNE = "hydra.sweeper.pruner={_target_: optuna.pruners.ThresholdPruner, lower: 2.0}"


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def _command(url: str, name: str, sweep: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "src.run",
        "hparams_search=optuna",
        "debug=smoke",
        "epochs=2",
        f"hydra.sweeper.storage={url}",
        f"hydra.sweeper.study_name={name}",
        f"hydra.sweep.dir={sweep}",
        *extra,
    ]


def test_two_commands_share_one_study_with_a_pruner(postgres, tmp_path):
    """The documented recipe as written: the same study name and database URL on two commands
    at once (here on one machine, each with a folder of its own); every trial is counted once,
    pruned by the study's pruner."""
    url, name = f"{postgres}/optuna", "shared-pruned"
    workers = [
        subprocess.Popen(
            _command(url, name, tmp_path / f"w{i}", "hydra.sweeper.n_trials=2", ALWAYS_PRUNE),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"w{i}.log").open("w"),
        )
        for i in range(2)
    ]
    assert [w.wait(timeout=300) for w in workers] == [0, 0], [
        (tmp_path / f"w{i}.log").read_text()[-1500:] for i in range(2)
    ]
    trials = _study(url, name).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # none lost, none twice
    assert [t.state.name for t in trials] == ["PRUNED"] * 4
    folders = [p for w in (0, 1) for p in (tmp_path / f"w{w}").glob("*_*") if p.is_dir()]
    assert sorted(p.name.split("_")[0] for p in folders) == ["0", "1", "2", "3"]


def test_a_worker_killed_mid_trial_leaves_the_study_usable(postgres, tmp_path):
    """kill -9 of one command while its trial trains: its trial stays RUNNING (Optuna cannot
    know), the other command finishes its trials, and the study takes new ones."""
    url, name = f"{postgres}/optuna", "killed-worker"
    doomed = subprocess.Popen(
        _command(url, name, tmp_path / "doomed", "hydra.sweeper.n_trials=3", "epochs=20"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list((tmp_path / "doomed").glob("0_*/status.json")):
        assert doomed.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(2)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    proc = run_cli(*_command(url, name, tmp_path / "other", "hydra.sweeper.n_trials=2")[3:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = sorted(t.state.name for t in _study(url, name).trials)
    assert states == ["COMPLETE", "COMPLETE", "RUNNING"]


def test_mlflow_records_runs_and_a_sweep_in_a_postgresql_store(postgres, tmp_path):
    """logger=mlflow with a PostgreSQL backend store: a sweep is one experiment, a run per job,
    as on sqlite (tests/test_sweeps.py)."""
    import mlflow

    uri, sweep = f"{postgres}/mlflow", tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "debug=smoke",
        "logger=mlflow",
        f"logger.tracking_uri={uri}",
        "dropout=0.1,0.2",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(sweep.as_posix())
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.run_name"])
    assert [r.info.run_name for r in runs] == [
        "0_debug=smoke,dropout=0.1,logger=mlflow",
        "1_debug=smoke,dropout=0.2,logger=mlflow",
    ]
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    for run in runs:
        metrics = json.loads((sweep / run.info.run_name / "metrics.json").read_text())
        assert run.data.metrics["test/accuracy"] == metrics["test"]["accuracy"]
