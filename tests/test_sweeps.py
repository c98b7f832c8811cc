"""Sweeps as a user types them: multirun, a failing job, joblib, Optuna resumed, SLURM.

Every job is a `debug=smoke` run (seconds); each sweep writes into tmp_path. The submitit
launcher's own test is tests/test_distributed.py's job of two tasks.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from src.config.errors import UserError
from src.trainers.distributed import share_machine
from tests.conftest import CONF, run_cli, start_cli


def _rows(sweep: Path) -> list[dict]:
    return list(csv.DictReader((sweep / "summary.csv").open()))


@pytest.mark.processes
def test_multirun_2x2_summary_and_one_mlflow_experiment(tmp_path):
    """The 2x2 of heads and trainers as one sweep: its summary, and with logger=mlflow one
    experiment named after the sweep, a run per job named after its folder."""
    import mlflow

    sweep, uri = tmp_path / "sweep", f"sqlite:///{tmp_path / 'm.db'}"
    proc = run_cli(
        "-m",
        "debug=smoke",
        "model=hf_head,custom_head",
        "trainer=hf,manual",
        "logger=mlflow",
        f"logger.tracking_uri={uri}",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(sweep)
    assert [r["status"] for r in rows] == ["finished"] * 4
    pairs = {(r["model"], r["trainer"]) for r in rows}
    assert pairs == {(m, t) for m in ("hf_head", "custom_head") for t in ("hf", "manual")}
    # Each job's folder shows its overrides.
    jobs = [
        f"{n}_debug=smoke,logger=mlflow,model={m},trainer={t}"
        for n, (m, t) in enumerate(
            (m, t) for m in ("hf_head", "custom_head") for t in ("hf", "manual")
        )
    ]
    assert all((sweep / job / "metrics.json").is_file() for job in jobs)
    assert (sweep / "summary.png").is_file()
    assert "4 jobs: 4 finished, 0 failed, 0 incomplete." in (sweep / "summary.md").read_text()

    from src.trainers.loggers.mlflow import MLflowLogger

    client = mlflow.MlflowClient(uri)
    assert client.get_experiment_by_name(MLflowLogger.SINGLE_RUNS) is None
    experiment = client.get_experiment_by_name(sweep.as_posix())  # outside the project: absolute
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.run_name"])
    assert [r.info.run_name for r in runs] == jobs  # the job folders; the URI is no folder
    assert [r.data.tags["run_dir"] for r in runs] == [str(sweep / job) for job in jobs]
    assert [r.info.status for r in runs] == ["FINISHED"] * 4
    for run, job in zip(runs, jobs, strict=True):  # each run's overrides are its job's
        assert set(job.split("_", 1)[1].split(",")) <= set(run.data.tags["overrides"].split())
    assert len({r.data.params["model._target_"] for r in runs}) == 2  # each job's config


@pytest.mark.processes
def test_failed_job_does_not_stop_the_sweep(tmp_path):
    """A bad value in one job: the others run, the summary marks it failed, the exit code is 1
    (Hydra's basic launcher, and the sweep run again with resume=auto:
    test_a_failed_job_and_a_long_folder_name_under_the_basic_launcher)."""
    sweep = [
        "-m",
        "debug=smoke",
        "trainer=manual",
        "truncation=nope,head",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={tmp_path}",
    ]
    proc = run_cli(*sweep)
    assert proc.returncode == 1
    assert "truncation=nope: one of head, tail, head_tail, chunks" in proc.stderr
    assert "Traceback" not in proc.stderr and 'File "' not in proc.stderr  # one line, no trace
    rows = {r["truncation"]: r for r in _rows(tmp_path)}
    head = json.loads(
        (tmp_path / "1_debug=smoke,trainer=manual,truncation=head" / "metrics.json").read_text()
    )
    assert rows["head"]["status"] == "finished"
    assert float(rows["head"]["test_accuracy"]) == pytest.approx(head["test"]["accuracy"], abs=1e-4)
    assert rows["nope"]["status"] == "failed"
    assert rows["nope"]["error"].startswith("error: truncation=nope: one of head")
    assert (tmp_path / "0_debug=smoke,trainer=manual,truncation=nope" / "error.txt").is_file()
    import joblib  # two jobs side by side share the cores

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


def test_slurm_preset_reaches_sbatch(tmp_path):
    """Up to submission: a stand-in sbatch keeps the script submitit wrote for the preset (a
    stand-in sinfo offers a GPU node; the real cluster: engines/test_slurm.py)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sinfo").write_text("#!/bin/sh\necho 'gpu*|16|128000|gpu:4'\n")
    (bin_dir / "sbatch").write_text(
        '#!/bin/sh\ncp "$1" "$SBATCH_COPY"\necho no cluster >&2\nexit 1\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    script = tmp_path / "job.sh"
    proc = run_cli(
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "model=hf_head,custom_head",
        f"hydra.sweep.dir={tmp_path}/sweep",
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SBATCH_COPY": str(script)},
    )
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
    """Through Hydra's own compose API, as a user's script composes: nothing registered first
    (every declaration is a file of conf/declared/)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            slurm = compose("config", ["hydra/launcher=slurm"], return_hydra_config=True)
            optuna = compose("config", ["hparams_search=optuna"], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    assert slurm.hydra.launcher.signal_delay_s == 120 and slurm.hydra.launcher.gpus_per_node == 1
    sweeper = optuna.hydra.sweeper
    name = sweeper.study_name
    assert sweeper.direction == "maximize" and name.startswith("movie_reviews-")
    assert sweeper.storage == f"sqlite:///outputs/optuna/{name}/optuna.db"
    assert set(sweeper.params) == {"lr", "dropout", "batch_size", "scheduler.warmup_ratio"}


RESUMABLE_SWEEP = [
    "-m",
    "debug=smoke",
    "trainer=manual",
    "model=custom_head",
    "seed=1,2,3",
    "epochs=1",  # 12 steps: job 2 is killed at its checkpoint of step 5
    "dataset.max_train_samples=96",
    "trainer.save_steps=5",
]


@pytest.mark.processes
def test_sweep_killed_in_its_second_job_resumes(tmp_path):
    """SIGKILL during job 2 of 3, then the same command with resume=auto: job 1 is skipped
    (metrics.json untouched, its metric returned), job 2 continues from its checkpoint, job 3
    runs; all three end finished and the summary says how each began."""
    sweep = [*RESUMABLE_SWEEP, f"hydra.sweep.dir={tmp_path}"]
    proc = start_cli(*sweep)
    end = time.monotonic() + 300
    try:
        while not (checkpoints := list(tmp_path.glob("1_*seed=2*/checkpoints/step-0000005"))):
            assert proc.poll() is None, f"sweep ended early: {proc.stderr.read()}"
            assert time.monotonic() < end, "no checkpoint in job 2 after 300 s"
            time.sleep(0.01)
    finally:  # killed at the checkpoint, or when the wait fails: no sweep outlives the test
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    second = checkpoints[0].parents[1]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert [p.name[0] for p in jobs] == ["0", "1"] and not (second / "metrics.json").exists()
    first = {p: (p / "metrics.json").stat().st_mtime_ns for p in jobs[:1]}
    texts = {p: (p / "metrics.json").read_text() for p in jobs[:1]}

    rerun = run_cli(*sweep, "resume=auto")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for folder, mtime in first.items():  # not retrained, not rewritten
        assert (folder / "metrics.json").stat().st_mtime_ns == mtime
        assert (folder / "metrics.json").read_text() == texts[folder]
    assert "resumed from" in (second / "run.log").read_text()
    assert json.loads((second / "metrics.json").read_text())["resumed_from"].endswith("0005")
    rows = {r["seed"]: r for r in _rows(tmp_path)}
    assert [rows[s]["status"] for s in "123"] == ["finished"] * 3
    assert [rows[s]["start"] for s in "123"] == ["skipped", "resumed", "fresh"]
    assert (
        "3 finished, 0 failed, 0 incomplete; 1 fresh, 0 rerun, 1 resumed, 1 skipped."
        in (tmp_path / "summary.md").read_text()
    )


def test_a_second_sweep_into_a_live_sweeps_folder_is_refused(tmp_path):
    """A sweep run again while the first still runs would mix the two: the second is refused
    before it launches a job (here this test's process holds the folder, as a sweep does)."""
    from src.config.rundir import claimed

    with claimed(tmp_path):
        proc = run_cli("-m", "debug=smoke", "seed=1,2", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: hydra.sweep.dir={tmp_path}: in use by a run that is still alive "
        f"(pid {os.getpid()}); wait for it to end or choose another folder"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_dry_run_lists_the_jobs_and_creates_nothing(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "debug=smoke",
        "model=hf_head,custom_head",
        "trainer=hf,manual",
        "--dry-run",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == f"sweep folder: {sweep} (hydra.sweep.dir)"
    assert lines[4] == (  # the folder the real sweep names (test_multirun_2x2_summary)
        "job 3: debug=smoke model=custom_head trainer=manual -> "
        "3_debug=smoke,model=custom_head,trainer=manual"
    )
    assert lines[-1] == "4 jobs; nothing was created (drop --dry-run to launch)."
    assert not sweep.exists()


@pytest.mark.parametrize("bad", ["lr", "data file"])
def test_dry_run_reports_a_bad_job_as_one_line(tmp_path, bad):
    """A bad value, or a data file that is not there, as `src.run` would refuse it."""
    (tmp_path / "a.csv").write_text("text,label\na,x\nb,y\n")
    sweep = (
        ["lr=1e-4,-1"]
        if bad == "lr"
        else ["dataset=files", f"dataset.train_file={tmp_path}/a.csv,{tmp_path}/gone.csv"]
    )
    proc = run_cli("-m", "debug=smoke", *sweep, "--dry-run", f"hydra.sweep.dir={tmp_path}/sweep")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "error: lr=-1: a number > 0"
        if bad == "lr"
        else f"error: dataset.train_file={tmp_path}/gone.csv: data file "
        f"{tmp_path}/gone.csv does not exist"
    )
    assert not (tmp_path / "sweep").exists()


def test_dry_run_checks_each_job_as_it_will_run(encoder_folder, tmp_path, capsys):
    """A value the default backbone refuses but every swept one allows (max_length=768 over two
    encoders of 1024 positions; the default allows 512) is no mistake: the preview lists the
    jobs the sweep runs, and refuses the one job that cannot."""
    import shutil

    from src.sweeps import preview

    folders = []
    for name, positions in (("a", 1024), ("b", 1024), ("short", 128)):
        folder = Path(shutil.copytree(encoder_folder("modernbert"), tmp_path / name))
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(
            json.dumps({**config, "max_position_embeddings": positions})
        )
        folders.append(folder)
    sweep = ["-m", "debug=smoke", "max_length=768", f"hydra.sweep.dir={tmp_path}/sweep"]
    paths = ",".join(str(f) for f in folders[:2])
    assert preview.main([*sweep, f"backbone.path={paths}"]) == 0
    assert (
        capsys.readouterr()
        .out.strip()
        .endswith("2 jobs; nothing was created (drop --dry-run to launch).")
    )
    paths = ",".join(str(f) for f in folders)
    with pytest.raises(UserError, match=r"^max_length=768: an integer from 3 to 128"):
        preview.main([*sweep, f"backbone.path={paths}"])
    assert not (tmp_path / "sweep").exists()


def test_dry_run_of_an_optuna_study_prints_its_space(tmp_path):
    proc = run_cli(
        "hparams_search=optuna",
        "debug=smoke",
        "epochs=choice(1,2)",
        "seed=range(1,3)",
        "--dry-run",
        f"hydra.sweep.dir={tmp_path}/study",
    )
    assert proc.returncode == 0, proc.stderr
    # each parameter's text, then what the study draws from (hydra-optuna-sweeper's meaning:
    # range(1,3) is 1, 2 and 3, where Hydra's -m would run 1 and 2)
    assert "  lr: tag(log, interval(1e-5, 3e-4)) -> a float in [1e-05, 0.0003], log scale" in (
        proc.stdout
    )
    assert "  epochs: choice(1,2) -> 1, 2\n" in proc.stdout
    assert "  seed: range(1,3) -> 1, 2, 3\n" in proc.stdout
    assert "sampler TPESampler, pruner none" in proc.stdout
    assert "20 trials, 1 at a time; nothing was created" in proc.stdout
    assert not (tmp_path / "study").exists()


def test_each_dataset_and_search_space_gets_a_study_of_its_own(tmp_path):
    """A study on another dataset (or another search space, head...) no longer resumes the
    movie_reviews one; the same command names the same study, and so does every trial."""
    from src.config.compose import compose

    def study(*overrides: str) -> str:
        return compose(["hparams_search=optuna", *overrides], hydra=True).hydra.sweeper.study_name

    files = ("dataset=files", f"dataset.train_file={tmp_path / 'reviews.csv'}")
    names = {
        study(),
        study(*files),
        study("model=hf_head"),
        study("hydra.sweeper.params.lr='interval(1e-5, 1e-4)'"),
    }
    assert len(names) == 4 and study(*files).startswith("reviews-")
    assert study() == study() == study("lr=3e-4", "dropout=0.3")  # a trial's values


# --- our Optuna sweeper (src/sweeps/study.py): pruning, workers on one study, folder names ----

ALWAYS_PRUNE = "hydra.sweeper.pruner={_target_: optuna.pruners.ThresholdPruner, lower: 2.0}"


def _states(study: Path) -> list[str]:
    return [state for _, state in _trials(study)]


@pytest.mark.parametrize(
    "lost",
    ["table studies already exists", "UNIQUE constraint failed: alembic_version.version_num"],
)
def test_a_command_that_loses_the_race_to_create_the_storage_opens_it(monkeypatch, tmp_path, lost):
    """Two commands starting one new study: the one whose CREATE TABLE or schema-version INSERT
    lost opens the storage the other made; any other failure stays one line."""
    import optuna.storages

    from src.sweeps import study

    real, calls = optuna.storages.RDBStorage, []

    def racing(url, **kwargs):
        calls.append(url)
        if len(calls) == 1:
            raise RuntimeError(f"(sqlite3.IntegrityError) {lost}")
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert study.storage(url) is not None and len(calls) == 2
    calls.clear()
    monkeypatch.setattr(optuna.storages, "RDBStorage", lambda url, **kw: 1 / 0)
    with pytest.raises(UserError, match="cannot be opened .division by zero"):
        study.storage(url)


@pytest.mark.processes
def test_pruned_trials_under_two_processes_on_one_study_and_not_retried(tmp_path):
    """Two `python -m src.run hparams_search=optuna` commands at once share the study through
    its sqlite storage: one runs a trial of the manual loop, the other two trials side by side
    (joblib), each under transformers' Trainer, which stops at its first epoch's evaluation
    when the study's pruner says so. A pruner that stops every trial (an F1 must reach 2.0)
    stops each after its first epoch: status.json `pruned`, a complete folder (metrics so far,
    best weights), counted in the summary. A third command, stopped by Ctrl-C in its trial,
    resumes it when run again (`_interrupted_trial_resumes`)."""
    study = tmp_path / "study"
    command = [
        "hparams_search=optuna",
        "debug=smoke",
        "epochs=3",
        f"hydra.sweep.dir={study}",
    ]
    commands = [
        [*command, "hydra.sweeper.n_trials=1", ALWAYS_PRUNE],
        [
            *command,
            "trainer=hf",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.n_trials=2",
            ALWAYS_PRUNE,
        ],
    ]
    logs = [(tmp_path / f"{i}.log").open("w") for i in range(2)]
    workers = [start_cli(*c, stdout=log, stderr=log) for c, log in zip(commands, logs, strict=True)]
    codes = [w.wait(timeout=300) for w in workers]
    assert codes == [0, 0], [(tmp_path / f"{i}.log").read_text()[-1500:] for i in range(2)]
    assert sorted(_states(study)) == ["PRUNED"] * 3
    jobs = [p.parent for p in study.glob("*/status.json")]
    assert len(jobs) == 3
    trainers = []
    for job in jobs:
        assert json.loads((job / "status.json").read_text())["status"] == "pruned"
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["pruned"] is True and [r["epoch"] for r in metrics["history"]] == [1]
        assert (job / "best_model" / "model.safetensors").is_file()
        trainers.append(metrics["trainer"])
    assert sorted(trainers) == ["HFTrainer", "HFTrainer", "ManualTrainer"], trainers
    summary = (study / "summary.md").read_text()
    assert "3 jobs: 0 finished, 3 pruned, 0 failed, 0 incomplete." in summary
    assert "pruned: 3" in (study / "optimization_results.yaml").read_text()
    _interrupted_trial_resumes(study, [*command, "trainer.save_steps=2"], tmp_path)


def _interrupted_trial_resumes(study: Path, command: list[str], tmp_path: Path) -> None:
    """Ctrl-C in a third command's trial (3) on the same study: the job saves a checkpoint and
    prints exactly the command that resumes it; that command finishes the same trial (its
    number, parameters, folder and checkpoint) before a new one (4), its numbering going on
    from the file, and leaves the pruned trials pruned. The summary's columns are what the
    study swept, not `resume`."""
    command = [*command, "hydra.sweeper.n_trials=2"]
    log = tmp_path / "third.log"  # a file: a pipe nobody reads would fill and stop the job
    with log.open("w") as out:
        third = start_cli(*command, stdout=out, stderr=out)
        deadline = time.monotonic() + 300
        while not list(study.glob("3_*/checkpoints/step-*")):
            assert third.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint in trial 3"
            time.sleep(0.05)
        third.send_signal(signal.SIGINT)  # Ctrl-C once trial 3 has a checkpoint
        third.wait(timeout=120)
    err = log.read_text()
    assert third.returncode == 130, err[-3000:]
    assert _trials(study) == [*((n, "PRUNED") for n in range(3)), (3, "RUNNING")]
    (stopped,) = study.glob("3_*")
    assert json.loads((stopped / "status.json").read_text())["status"] == "interrupted"
    (last,) = [line for line in err.splitlines() if "; the same command resumes trial" in line]
    assert last.startswith("interrupted: saved ") and "Traceback" not in err
    printed = last.split("; the same command resumes trial 3: ", 1)[1]
    assert printed.startswith("python -m src.run ")
    again = shlex.split(printed)
    assert sorted(again[3:]) == sorted(command)  # exactly the command, nothing added

    proc = run_cli(*again[3:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _trials(study) == [*((n, "PRUNED") for n in range(3)), (3, "COMPLETE"), (4, "COMPLETE")]
    assert sorted(p.name.split("_")[0] for p in study.glob("*_*") if p.is_dir()) == list("01234")
    metrics = json.loads((stopped / "metrics.json").read_text())
    assert metrics["resumed_from"] and "resumed from" in (stopped / "run.log").read_text()
    import optuna

    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{study}/optuna.db")
    resumed = optuna.load_study(
        study_name=summary.study_name, storage=f"sqlite:///{study}/optuna.db"
    )
    trial = resumed.trials[3]  # its epochs reported to it (pruning reads them), its parameters
    assert sorted(trial.intermediate_values) == [0, 1, 2]  # the folder's name was drawn from
    assert all(
        f"{k}={v}" in stopped.name or f"{k}={v!r}" in stopped.name for k, v in trial.params.items()
    )
    rows = {r["job"].split("_")[0]: r for r in _rows(study)}
    assert rows["3"]["start"] == "resumed" and rows["3"]["status"] == "finished"
    assert "resume" not in rows["3"]  # how a job started is no swept column


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["hydra.sweeper.pruner={_target_: optuna.pruners.Nope}"],
            "hydra.sweeper.pruner._target_=optuna.pruners.Nope: not an Optuna pruner",
        ),
        (
            ["hydra.sweeper.sampler={_target_: random.Random}"],
            "hydra.sweeper.sampler._target_=random.Random: not an Optuna sampler",
        ),
        (
            ["hydra.sweeper.pruner={_target_: optuna.pruners.MedianPruner, bogus: 1}"],
            "hydra.sweeper.pruner: optuna.pruners.MedianPruner refuses its arguments "
            "(MedianPruner.__init__() got an unexpected keyword argument 'bogus')",
        ),
        (
            ["+hydra.sweeper.params.lrr='interval(0.1, 0.2)'"],
            "hydra.sweeper.params.lrr: not a key of the config",
        ),
        (
            ["hydra.sweeper.storage=sqlite:////proc/nope/optuna.db"],
            "hydra.sweeper.storage=sqlite:////proc/nope/optuna.db: cannot be opened",
        ),
        (
            ["hydra.sweeper.storage=postgresql://me@127.0.0.1:1/db"],
            "hydra.sweeper.storage=postgresql://me@127.0.0.1:1/db: cannot be opened",
        ),
        (
            ["hydra.sweeper.n_jobs=2"],
            "hydra.sweeper.n_jobs=2: the basic launcher runs one job at a time",
        ),
        (
            ["hydra.sweeper.n_jobs=4", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
            "hydra.sweeper.n_jobs=4: the launcher runs 2 at a time",
        ),
        (
            ["lr=interval(1e-3, 1e-5)"],
            "hydra.sweeper.params.lr=interval(1e-3, 1e-5): bounds in the wrong order",
        ),
        (
            ["dropout=tag(log, interval(0.0, 0.5))"],
            "hydra.sweeper.params.dropout=tag(log, interval(0.0, 0.5)): a log scale needs a "
            "low bound above 0 (it is 0.0)",
        ),
        (
            ["epochs=range(3,1)"],
            "hydra.sweeper.params.epochs=range(3,1): an empty range (3 is above 1)",
        ),
        (
            ["task=regression", "hydra.sweeper.direction=maximize"],
            "hydra.sweeper.direction=maximize: the study optimises the best eval mse "
            "(trainer.metric_for_best_model), which is better lower; set minimize",
        ),
        (  # an override Hydra cannot apply: its line, and OmegaConf's (it was a traceback)
            ['hydra.sweeper.params={+lever: "choice(a,b)"}'],
            "Could not override 'hydra.sweeper.params'. (Key '+lever' is not in struct",
        ),
        (  # hydra-optuna-sweeper's list of directions: here each names its objective
            ["hydra.sweeper.direction=[maximize,minimize]"],
            "hydra.sweeper.direction=['maximize', 'minimize']: directions for 2 objectives, "
            "and a run's values name none here; say what each one is, e.g. "
            "hydra.sweeper.objectives=[f1,train_seconds]",
        ),
        (
            ["hydra.sweeper.objectives=[f1,seconds]"],
            "hydra.sweeper.objectives: seconds is not an objective; use f1 "
            "(trainer.metric_for_best_model), train_seconds, trainable_parameters, "
            "peak_memory_mb, latency_ms",
        ),
        (
            ["hydra.sweeper.objectives=[accuracy,train_seconds]"],
            "hydra.sweeper.objectives: accuracy is not an objective; use f1 (trainer."
            "metric_for_best_model), train_seconds, trainable_parameters, peak_memory_mb, "
            "latency_ms; the run chooses its epoch by f1: set trainer.metric_for_best_model="
            "accuracy to optimise accuracy",
        ),
        (
            ["hydra.sweeper.objectives=[train_seconds,latency_ms]"],
            "hydra.sweeper.objectives=['train_seconds', 'latency_ms']: give the run's metric "
            "(f1) once",
        ),
        (
            [
                "hydra.sweeper.objectives=[f1,train_seconds]",
                "hydra.sweeper.direction=[maximize,maximize]",
            ],
            "hydra.sweeper.direction=['maximize', 'maximize']: the study optimises "
            "train_seconds, a cost, which is better lower; set minimize",
        ),
        (
            [
                "hydra.sweeper.objectives=[f1,peak_memory_mb]",
                "hydra.sweeper.pruner={_target_: optuna.pruners.MedianPruner}",
            ],
            "hydra.sweeper.pruner: Optuna prunes a study of one objective only, and this one "
            "has 2 (f1, peak_memory_mb); drop the pruner (hydra.sweeper.pruner=null)",
        ),
    ],
)
def test_a_bad_study_setting_is_one_line_before_any_trial(tmp_path, overrides, expected):
    from src.sweeps import preview

    with pytest.raises(UserError) as caught:
        preview.study_preflight(
            ["hparams_search=optuna", f"hydra.sweep.dir={tmp_path}", *overrides]
        )
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)


def test_a_bad_study_setting_through_the_cli(tmp_path):
    proc = run_cli(
        "hparams_search=optuna",
        "debug=smoke",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweep.dir={tmp_path / 'study'}",
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: hydra.sweeper.n_jobs=2: ")
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "study").exists()


@pytest.mark.parametrize(
    ("sweep", "refused"),
    [
        (["lr=0", "dropout=0.1,0.2", "seed=1,2,3"], "lr=0: a number > 0"),
        (["hparams_search=optuna", "truncation=nope"], "truncation=nope: one of head"),
        (["truncation=nope,head", "dropout=0.1,0.2"], None),  # job 1 runs: the sweep starts
        (["hparams_search=optuna", "truncation=choice(nope,head)"], None),  # head can run
    ],
    ids=["sweep", "study", "one-job-runs", "one-choice-runs"],
)
def test_a_mistake_every_job_shares_is_one_line_before_the_sweep(tmp_path, capsys, sweep, refused):
    """A sweep or study none of whose jobs can run is its mistake in one line, exit 2, before
    Hydra makes the sweep's folder or the study its storage (each job failed on its own, the
    same line once a job); where one job can run the sweep starts and the bad jobs fail alone
    (test_failed_job_does_not_stop_the_sweep). A study's trials are drawn: refused only where
    no point of its space (each choice, each range's ends) can run."""
    from src.sweeps import preview

    argv = ["-m", "debug=smoke", *sweep, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    if refused is None:
        assert preview.before_hydra(argv)[: len(argv)] == argv
        return
    with pytest.raises(SystemExit) as stopped:
        preview.before_hydra(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1
    assert err == f"error: {refused}" + err.removeprefix(f"error: {refused}")
    assert err.endswith("(in every job of this sweep: nothing was launched)\n")
    assert not (tmp_path / "sweep").exists()  # no folder, no optuna.db


def test_the_search_space_reads_hydras_sweep_syntax():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from src.sweeps.study import space

    params = {
        "lr": "tag(log, interval(1e-5, 3e-4))",
        "dropout": "interval(0.0, 0.5)",
        "batch_size": "choice(8, 16, 32)",
        "layers": "range(1, 4)",
    }
    found, fixed = space(params, ["epochs=choice(1,2)", "seed=3", "dropout=0.1"])
    assert found == {
        "lr": FloatDistribution(1e-5, 3e-4, log=True),
        "batch_size": CategoricalDistribution([8, 16, 32]),
        "layers": IntDistribution(1, 4, step=1),
        "epochs": CategoricalDistribution([1, 2]),
    }
    assert fixed == ["seed=3", "dropout=0.1"]  # a value on the command line fixes the key


def test_a_job_folder_always_fits_and_keeps_its_name():
    from src.config.compose import NAME_BYTES, job_dir

    short = "0_lr=0.001,seed=1"
    assert job_dir(short) == short
    long = "0_" + ",".join(f"trainer.key_{i}=value_{i}" for i in range(20))
    name = job_dir(long)
    assert len(name.encode()) <= NAME_BYTES and name == job_dir(long)  # stable: resume finds it
    assert name.startswith("0_trainer.key_0=value_0,") and name != job_dir(long + "x")


@pytest.mark.processes
def test_a_failed_job_and_a_long_folder_name_under_the_basic_launcher(tmp_path):
    """Hydra's basic launcher runs the jobs one after the other in this process: a job's bad
    value is one line and the next job still runs (exit code 1). With twelve overrides
    Hydra's folder name would pass 255 bytes (Errno 36): each job runs in a shortened folder
    whose .hydra/overrides.yaml the summary reads. The sweep run again with resume=auto skips
    the finished job (its metric returned, nothing retrained) and runs the failed one again
    (which fails again)."""
    sweep = [
        "-m",
        "debug=smoke",
        "truncation=nope,head",
        "seed=1",
        "dataset.max_train_samples=16",
        "dataset.max_eval_samples=16",
        "max_length=32",
        "lr=1e-3",
        "dropout=0.2",
        "eval_batch_size=8",
        "trainer.save_total_limit=1",
        "trainer.logging_steps=1",
        "trainer.early_stopping_patience=2",
        f"hydra.sweep.dir={tmp_path}",
    ]
    proc = run_cli(*sweep)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "truncation=nope: one of head, tail, head_tail, chunks" in proc.stderr
    assert "Traceback" not in proc.stderr and 'File "' not in proc.stderr
    rows = {r["truncation"]: r for r in _rows(tmp_path)}
    assert rows["nope"]["status"] == "failed"
    assert rows["nope"]["error"].startswith("error: truncation=nope: one of head")
    assert (tmp_path / rows["nope"]["job"] / "error.txt").is_file()
    head = rows["head"]
    assert head["status"] == "finished" and "~" in head["job"] and len(head["job"]) <= 200
    metrics = json.loads((tmp_path / head["job"] / "metrics.json").read_text())
    assert float(head["test_accuracy"]) == pytest.approx(metrics["test"]["accuracy"], abs=1e-4)
    again = run_cli(*sweep, "resume=auto")
    assert again.returncode == 1, again.stderr[-3000:]
    rows = {r["truncation"]: r for r in _rows(tmp_path)}
    assert (rows["head"]["status"], rows["head"]["start"]) == ("finished", "skipped")
    assert (rows["nope"]["status"], rows["nope"]["start"]) == ("failed", "rerun")
    assert json.loads((tmp_path / head["job"] / "metrics.json").read_text()) == metrics


def test_a_slurm_request_is_checked_against_what_sinfo_says():
    """What sinfo reports for each node (partition, CPUs, memory, GRES) against the preset's
    request: the default partition (`*`) when none is named; each key that no node can meet
    is one line (engines/test_slurm.py shows it against a real cluster)."""
    from src.sweeps import slurm

    sinfo = "debug*|2|22000|(null)\ngpu|64|512000|gpu:a100:8(S:0-1)\ngpu|64|512000|gpu:4\n"
    preset = {
        "_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
        "partition": None,
        "gpus_per_node": 1,
        "tasks_per_node": 1,
        "cpus_per_task": 8,
        "mem_gb": 32,
    }
    with pytest.raises(UserError, match=r"^hydra.launcher.gpus_per_node=1: partition debug has "):
        slurm.check(preset, sinfo)
    slurm.check({**preset, "partition": "gpu", "gpus_per_node": 8}, sinfo)  # its biggest node
    for changes, line in [
        ({"partition": "gpu", "gpus_per_node": 9}, "gpus_per_node=9: partition gpu has at most 8"),
        ({"gpus_per_node": 0}, "cpus_per_task=8: 1 task(s) of it need 8 CPUs, and partition deb"),
        ({"gpus_per_node": 0, "cpus_per_task": 1, "tasks_per_node": 3}, "cpus_per_task=1: 3 tas"),
        ({"gpus_per_node": 0, "cpus_per_task": 2}, "mem_gb=32: partition debug's nodes have at mo"),
        ({"partition": "a100"}, "partition=a100: no such partition here; sinfo lists debug, gpu"),
    ]:
        with pytest.raises(UserError, match="^hydra.launcher." + re.escape(line)):
            slurm.check({**preset, **changes}, sinfo)
    assert slurm.gpus_of("gpu:a100:8(S:0-1),gpu:2") == 10 and slurm.gpus_of("(null)") == 0


def test_a_slurm_sweep_where_no_cluster_answers_is_one_line(tmp_path, monkeypatch):
    """No SLURM commands here, or commands without a cluster (sinfo fails): one line before
    Hydra starts, not submitit's traceback from sbatch."""
    from src.sweeps import slurm

    preset = {"_target_": "x.SlurmLauncher", "gpus_per_node": 0}
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match=r"^hydra/launcher=slurm: no SLURM commands \(sbatch"):
        slurm.preflight(preset)
    for tool, text in (
        ("sbatch", "exit 0"),
        ("sinfo", "echo 'sinfo: fatal: no config' >&2; exit 1"),
    ):
        (tmp_path / tool).write_text(f"#!/bin/sh\n{text}\n")
        (tmp_path / tool).chmod(0o755)
    with pytest.raises(UserError, match=r"answers here \(sinfo: sinfo: fatal: no config\); run"):
        slurm.preflight(preset)


def test_a_sweep_folder_takes_its_own_sweep_again_and_counts_only_its_jobs(tmp_path):
    """hydra.sweep.dir holding another sweep (other keys, or another value every job shares)
    is one line before any job (its jobs would have joined the earlier ones in one summary,
    those called skipped); the same sweep again, with resume=auto or more values of a swept
    key, goes on. A single run or an evaluation written into the sweep's folder is no job."""
    from omegaconf import OmegaConf

    from src.outputs.callbacks import same_sweep
    from src.outputs.trained import sweep_jobs

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    OmegaConf.save(
        {"hydra": {"overrides": {"task": ["debug=smoke", "dropout=0.1,0.2"]}}},
        sweep / "multirun.yaml",
    )
    for again in (
        ["debug=smoke", "dropout=0.1,0.2", "resume=auto"],
        ["dropout=0.1,0.2,0.3", "debug=smoke"],
    ):
        same_sweep(sweep, again)
    for other in (["debug=smoke", "lr=0.01,0.02"], ["debug=overfit", "dropout=0.1,0.2"]):
        with pytest.raises(UserError, match=r"holds another sweep \(debug=smoke dropout=0.1,0.2\)"):
            same_sweep(sweep, other)
    for name, mode in (("0_dropout=0.1", "MULTIRUN"), ("eval", "RUN")):
        (sweep / name / ".hydra").mkdir(parents=True)
        (sweep / name / ".hydra" / "overrides.yaml").write_text("- dropout=0.1\n")
        (sweep / name / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  mode: {mode}\n")
    assert [job.name for job in sweep_jobs(sweep)] == ["0_dropout=0.1"]
