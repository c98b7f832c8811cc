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


RESUMABLE_SWEEP = [
    "-m", "debug=smoke", "trainer=manual", "model=custom_head", "seed=1,2,3,4", "epochs=2",
    "dataset.max_train_samples=96", "trainer.save_steps=5",
]  # fmt: skip


def test_sweep_killed_in_its_third_job_resumes(tmp_path):
    """SIGKILL during job 3 of 4, then the same command with resume=auto: jobs 1-2 are skipped
    (metrics.json untouched, their metric returned), job 3 continues from its checkpoint, job 4
    runs; all four end finished and the summary says how each began."""
    sweep = [*RESUMABLE_SWEEP, f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "src.run", *sweep],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    end = time.monotonic() + 300
    try:
        while not (checkpoints := list(tmp_path.glob("2_*seed=3*/checkpoints/step-0000005"))):
            assert proc.poll() is None, f"sweep ended early: {proc.stderr.read()}"
            assert time.monotonic() < end, "no checkpoint in job 3 after 300 s"
            time.sleep(0.01)
    finally:  # killed at the checkpoint, or when the wait fails: no sweep outlives the test
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    third = checkpoints[0].parents[1]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert [p.name[0] for p in jobs] == ["0", "1", "2"] and not (third / "metrics.json").exists()
    first_two = {p: (p / "metrics.json").stat().st_mtime_ns for p in jobs[:2]}
    texts = {p: (p / "metrics.json").read_text() for p in jobs[:2]}

    rerun = run_cli(*sweep, "resume=auto")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for folder, mtime in first_two.items():  # not retrained, not rewritten
        assert (folder / "metrics.json").stat().st_mtime_ns == mtime
        assert (folder / "metrics.json").read_text() == texts[folder]
    assert "resumed from" in (third / "run.log").read_text()
    assert json.loads((third / "metrics.json").read_text())["resumed_from"].endswith("0005")
    rows = {r["seed"]: r for r in _rows(tmp_path)}
    assert [rows[s]["status"] for s in "1234"] == ["finished"] * 4
    assert [rows[s]["start"] for s in "1234"] == ["skipped", "skipped", "resumed", "fresh"]
    assert (
        "4 finished, 0 failed, 0 incomplete; 1 fresh, 0 rerun, 1 resumed, 2 skipped."
        in (tmp_path / "summary.md").read_text()
    )


def test_finished_joblib_sweep_run_again_is_all_skipped(tmp_path):
    sweep = [
        "-m", "debug=smoke", "seed=1,2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={tmp_path}",
    ]  # fmt: skip
    assert run_cli(*sweep).returncode == 0
    again = run_cli(*sweep, "resume=auto")
    assert again.returncode == 0, again.stderr[-3000:]
    assert [r["start"] for r in _rows(tmp_path)] == ["skipped", "skipped"]


def test_dry_run_lists_the_jobs_and_creates_nothing(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m", "debug=smoke", "model=hf_head,custom_head", "trainer=hf,manual", "--dry-run",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == f"sweep folder: {sweep} (hydra.sweep.dir)"
    assert lines[4] == (  # the folder the real sweep names (test_multirun_2x2_summary)
        "job 3: debug=smoke model=custom_head trainer=manual -> "
        "3_debug=smoke,model=custom_head,trainer=manual"
    )
    assert lines[-1] == "4 jobs; nothing was created (drop --dry-run to launch)."
    assert not sweep.exists()


def test_dry_run_reports_a_bad_job_as_one_line(tmp_path):
    proc = run_cli(
        "-m", "debug=smoke", "lr=1e-4,-1", "--dry-run", f"hydra.sweep.dir={tmp_path}/sweep"
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "error: lr=-1: a number > 0"
    assert not (tmp_path / "sweep").exists()


def test_dry_run_of_an_optuna_study_prints_its_space(tmp_path):
    proc = run_cli(
        "hparams_search=optuna", "debug=smoke", "epochs=choice(1,2)", "--dry-run",
        f"hydra.sweep.dir={tmp_path}/study",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "  lr: tag(log, interval(1e-5, 3e-4))" in proc.stdout
    assert "  epochs: choice(1,2)" in proc.stdout
    assert "20 trials, 1 at a time; nothing was created" in proc.stdout
    assert not (tmp_path / "study").exists()
