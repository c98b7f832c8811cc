"""On a real one-node SLURM cluster (slurm-wlm's slurmctld and slurmd, accounting off): the
docs' SLURM promises, each shown once against the engine itself."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, run_cli

# a CPU partition: what a job here asks for instead of the preset's GPU, 8 CPUs and 32 GB
CPU_JOB = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=3",
    "hydra.launcher.timeout_min=10",
]


def _queue() -> str:
    return subprocess.run(["squeue", "-h"], capture_output=True, text=True, check=True).stdout


def _on_slurm(sweep: Path, *overrides: str):
    """`python -m src.run ARGS` submitting its jobs to the cluster as CPU jobs; it must end 0."""
    proc = run_cli(*overrides, *CPU_JOB, f"hydra.sweep.dir={sweep}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _rows(sweep: Path) -> list[dict]:
    return list(csv.DictReader((sweep / "summary.csv").open()))


def test_the_preset_on_a_cpu_partition_is_one_line_before_anything_is_submitted(tmp_path):
    """The preset as written (a GPU, 8 CPUs, 32 GB) on this CPU node, then each key in turn:
    one line naming the key and what sinfo says the nodes have; nothing reaches the queue."""
    sweep = tmp_path / "sweep"
    base = ["-m", "hydra/launcher=slurm", "debug=smoke", f"hydra.sweep.dir={sweep}"]
    for extra, line in [
        (
            [],
            "error: hydra.launcher.gpus_per_node=1: partition debug has no GPUs (sinfo); set "
            "hydra.launcher.gpus_per_node=0 for a CPU job",
        ),
        (
            ["hydra.launcher.gpus_per_node=0"],
            "error: hydra.launcher.cpus_per_task=8: 1 task(s) "
            "of it need 8 CPUs, and partition debug's nodes have at most",
        ),
        (
            ["hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1"],
            "error: hydra.launcher.mem_gb=32: partition debug's nodes have at most",
        ),
        (
            ["hydra.launcher.partition=gpu"],
            "error: hydra.launcher.partition=gpu: no such partition here; sinfo lists debug",
        ),
    ]:
        proc = run_cli(*base, *extra, timeout=120)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
        assert proc.stderr.startswith(line), proc.stderr
        assert not sweep.exists() and _queue() == ""


def test_a_sweep_of_two_jobs_writes_the_right_summary_and_stays_quiet(tmp_path):
    """Two jobs as one array on the cluster: both finish, the summary is right, and the
    command's output holds none of submitit's sacct errors (accounting is off here)."""
    sweep = tmp_path / "sweep"
    proc = _on_slurm(sweep, "-m", "debug=smoke", "model=hf_head,custom_head")
    assert "sacct" not in proc.stdout + proc.stderr
    rows = _rows(sweep)
    assert sorted(r["model"] for r in rows) == ["custom_head", "hf_head"]
    assert [r["status"] for r in rows] == ["finished", "finished"]
    for row in rows:
        metrics = json.loads((sweep / row["job"] / "metrics.json").read_text())
        assert abs(float(row["test_accuracy"]) - metrics["test"]["accuracy"]) < 1e-9
    assert list((sweep / ".submitit").iterdir())  # the jobs' logs, as the docs say


def test_a_job_of_two_tasks_is_one_ddp_run(tmp_path):
    """tasks_per_node=2: SLURM starts two tasks, which are one DDP run (gloo on CPU) writing
    one folder."""
    sweep = tmp_path / "sweep"
    _on_slurm(sweep, "-m", "hydra.launcher.tasks_per_node=2", "debug=smoke", "trainer=manual")
    (job,) = [p.parent for p in sweep.glob("*/metrics.json")]
    assert json.loads((job / "metrics.json").read_text())["processes"] == 2
    assert len([p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]) == 1


def test_an_optuna_study_runs_its_trials_as_slurm_jobs(tmp_path):
    sweep = tmp_path / "study"
    _on_slurm(sweep, "hparams_search=optuna", "debug=smoke", "hydra.sweeper.n_trials=2")
    import optuna

    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{sweep}/optuna.db")
    assert summary.n_trials == 2
    logs = list((sweep / ".submitit").rglob("*_log.out"))
    assert len(logs) >= 2  # each trial a job of its own, with its SLURM log


def _job_ids() -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1] == "RUNNING"]


def _state(job_id: str) -> tuple[str, str]:
    out = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True
    ).stdout.split()
    return (out[0], out[1]) if len(out) == 2 else ("", "")


def test_a_job_requeued_by_slurm_resumes_from_its_checkpoint_to_the_uninterrupted_result(
    tmp_path,
):
    """`scontrol requeue` while the job trains: SLURM signals it, the job saves a checkpoint
    and exits for requeue; SLURM runs it again and it continues from that checkpoint
    (resume=auto, as the docs say), ending with the metrics of a run never interrupted."""
    import time

    common = ["debug=smoke", "trainer=manual", "epochs=3", "trainer.save_steps=2", "resume=auto"]
    sweep, reference = tmp_path / "sweep", tmp_path / "reference"
    proc = run_cli(*common, f"hydra.run.dir={reference}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (tmp_path / "launcher.log").open("w")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "src.run", "-m", *CPU_JOB, *common, f"hydra.sweep.dir={sweep}"],
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 240
    while not list(sweep.glob("0_*/checkpoints/step-*")):
        assert launcher.poll() is None, (tmp_path / "launcher.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint"
        time.sleep(0.2)
    (job_id,) = _job_ids()
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    while _state(job_id) != ("PENDING", "BeginTime"):  # SLURM holds a requeued job ~2 minutes
        assert time.monotonic() < deadline + 120, _state(job_id)
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    assert launcher.wait(timeout=300) == 0, (tmp_path / "launcher.log").read_text()[-3000:]
    (job,) = [p.parent for p in sweep.glob("*/metrics.json")]
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["resumed_from"], "the requeued job started over"
    expected = json.loads((reference / "metrics.json").read_text())
    assert metrics["test"] == expected["test"]
    assert [r["f1"] for r in metrics["history"]] == [r["f1"] for r in expected["history"]]
