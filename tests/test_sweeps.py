"""Sweeps as a user types them: multirun, a failing job, joblib, Optuna resumed, submitit, SLURM.

Every job is a `debug=smoke` run (seconds); each sweep writes into tmp_path.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from src.distributed import share_machine
from tests.conftest import CONF, ROOT, run_cli


def _rows(sweep: Path) -> list[dict]:
    return list(csv.DictReader((sweep / "summary.csv").open()))


def test_multirun_2x2_summary(tmp_path):
    proc = run_cli(
        "-m", "debug=smoke", "model=hf_head,custom_head", "trainer=hf,manual",
        f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(tmp_path)
    assert [r["status"] for r in rows] == ["finished"] * 4
    pairs = {(r["model"], r["trainer"]) for r in rows}
    assert pairs == {(m, t) for m in ("hf_head", "custom_head") for t in ("hf", "manual")}
    # Each job's folder shows its overrides.
    assert (tmp_path / "3_debug=smoke,model=custom_head,trainer=manual" / "metrics.json").is_file()
    assert (tmp_path / "summary.png").is_file()
    assert "4 jobs: 4 finished, 0 failed, 0 incomplete." in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_failed_job_does_not_stop_the_sweep(tmp_path, launcher):
    """A bad value in one job: the others run, the summary marks it failed, the exit code is 1."""
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    proc = run_cli(
        "-m", "debug=smoke", "trainer=manual", "truncation=nope,head", *parallel,
        f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert proc.returncode == 1
    assert "truncation=nope: one of head, tail, head_tail, chunks" in proc.stderr
    rows = {r["truncation"]: r for r in _rows(tmp_path)}
    head = json.loads(
        (tmp_path / "1_debug=smoke,trainer=manual,truncation=head" / "metrics.json").read_text()
    )
    assert rows["head"]["status"] == "finished"
    assert float(rows["head"]["test_accuracy"]) == pytest.approx(head["test"]["accuracy"], abs=1e-4)
    assert rows["nope"]["status"] == "failed" and "truncation=nope" in rows["nope"]["error"]
    assert (tmp_path / "0_debug=smoke,trainer=manual,truncation=nope" / "error.txt").is_file()
    if launcher == "joblib":  # two jobs side by side share the cores
        import joblib

        log = (tmp_path / "1_debug=smoke,trainer=manual,truncation=head" / "run.log").read_text()
        assert f"{max(1, joblib.cpu_count() // 2)} torch threads" in log


def test_share_machine_spreads_jobs_over_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    threads = torch.get_num_threads()
    try:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        share_machine(n_jobs=2, job_num=5, device="auto")
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # the GPUs the sweep was given
        share_machine(n_jobs=2, job_num=1, device="cuda")
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
        share_machine(n_jobs=2, job_num=1, device="cpu")
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
    finally:
        torch.set_num_threads(threads)


def _trials(study_dir: Path) -> list[tuple[int, str]]:
    """(number, state) of every trial in the study's sqlite file; [] while it is being set up."""
    try:
        with sqlite3.connect(study_dir / "optuna.db", timeout=10) as db:
            return db.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    except sqlite3.OperationalError:  # no file or no table yet
        return []


def test_optuna_study_is_interrupted_and_resumed(tmp_path):
    study = tmp_path / "study"
    command = [sys.executable, "-m", "src.run", "hparams_search=optuna", "debug=smoke"]
    command.append(f"hydra.sweep.dir={study}")
    with (tmp_path / "first.log").open("w") as out:
        first = subprocess.Popen(
            [*command, "hydra.sweeper.n_trials=3"], cwd=ROOT, stdout=out, stderr=out
        )
        deadline = time.monotonic() + 300
        while "COMPLETE" not in dict(_trials(study)).values() and first.poll() is None:
            assert time.monotonic() < deadline, "no trial finished"
            time.sleep(0.5)
        first.send_signal(signal.SIGINT)  # Ctrl-C once the first trial has finished
        first.wait(timeout=120)
    before = _trials(study)
    done = sum(state == "COMPLETE" for _, state in before)
    assert done >= 1, (tmp_path / "first.log").read_text()[-3000:]

    left = max(1, 3 - done)
    proc = run_cli(*command[3:], f"hydra.sweeper.n_trials={left}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = _trials(study)
    assert [n for n, _ in after] == list(range(len(after)))  # numbering goes on from the file
    assert [n for n, _ in after[: len(before)]] == [n for n, _ in before]
    assert len(after) == len(before) + left
    assert all(state == "COMPLETE" for _, state in after[len(before) :])
    rows = _rows(study)
    assert sum(r["status"] == "finished" for r in rows) == done + left
    assert {r["status"] for r in rows} <= {"finished", "incomplete"}  # the Ctrl-C'd trial
    assert (study / "optimization_results.yaml").is_file()


def test_submitit_local_launcher(tmp_path):
    """The SLURM launcher's code path (submitit: pickled job, separate process) run locally."""
    proc = run_cli(
        "-m", "hydra/launcher=submitit_local", "debug=smoke", f"hydra.sweep.dir={tmp_path}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["status"] for r in _rows(tmp_path)] == ["finished"]
    assert list(tmp_path.glob(".submitit/*/*_log.out"))


def test_slurm_preset_reaches_sbatch(tmp_path):
    """Up to submission: a stand-in sbatch keeps the script submitit wrote for the preset."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(
        '#!/bin/sh\ncp "$1" "$SBATCH_COPY"\necho no cluster >&2\nexit 1\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    script = tmp_path / "job.sh"
    proc = run_cli(
        "-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "model=hf_head,custom_head",
        f"hydra.sweep.dir={tmp_path}/sweep",
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SBATCH_COPY": str(script)},
    )  # fmt: skip
    assert proc.returncode != 0 and "no cluster" in proc.stderr
    text = script.read_text()
    for line in (
        "--array=0-1%2",
        "--partition=gpu",
        "--gpus-per-node=1",
        "--ntasks-per-node=1",
        "--time=60",
        "--signal=USR2@120",
    ):
        assert f"#SBATCH {line}\n" in text


def test_launcher_presets_compose():
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            slurm = compose("config", ["hydra/launcher=slurm"], return_hydra_config=True)
            optuna = compose("config", ["hparams_search=optuna"], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    assert slurm.hydra.launcher.signal_delay_s == 120 and slurm.hydra.launcher.gpus_per_node == 1
    sweeper = optuna.hydra.sweeper
    assert sweeper.direction == "maximize" and sweeper.study_name == "movie_reviews"
    assert sweeper.storage == "sqlite:///outputs/optuna/movie_reviews/optuna.db"
    assert set(sweeper.params) == {"lr", "dropout", "batch_size", "scheduler.warmup_ratio"}
