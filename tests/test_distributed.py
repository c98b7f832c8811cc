"""torchrun: two gloo processes on CPU give one run folder and the single-process results."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from src.trainers import distributed
from tests.conftest import ROOT

# no dropout anywhere, so one process with batch 16 and two with batch 8 see the same math
SAME_MATH = [
    "debug=smoke",
    "model=custom_head",
    "dropout=0.0",
    "epochs=2",
    "dataset.max_train_samples=64",
    "backbone.hidden_dropout=0.0",
    "backbone.attention_dropout=0.0",
]


def _run(cwd: Path, *args: str, nproc: int = 1) -> subprocess.CompletedProcess:
    launcher = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={nproc}",
            "--standalone",
        ]
        if nproc > 1
        else [sys.executable]
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*launcher, "-m", "src.run", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _probabilities(run_dir: Path) -> np.ndarray:
    rows = list(csv.DictReader((run_dir / "test_predictions.csv").open()))
    assert [int(r["index"]) for r in rows] == list(range(len(rows)))
    return np.array([[float(r["p_neg"]), float(r["p_pos"])] for r in rows])


def _ddp_run(tmp_path: Path, *args: str) -> Path:
    (tmp_path / "ddp").mkdir()
    _run(tmp_path / "ddp", *SAME_MATH, *args, "batch_size=8", "trainer.logging_steps=1", nproc=2)
    folders = list((tmp_path / "ddp" / "outputs" / "runs").iterdir())
    assert len(folders) == 1  # rank 0 chose it; rank 1 wrote nowhere else
    ddp = folders[0]
    assert (ddp / ".hydra").is_dir() and (ddp / "run.log").is_file()
    assert json.loads((ddp / "metrics.json").read_text())["n_test"] == 32
    assert _probabilities(ddp).shape == (32, 2)  # every test example once: no padding duplicates
    _assert_schedule_ends_at_zero(ddp)
    return ddp


def _assert_schedule_ends_at_zero(run_dir: Path) -> None:
    """64 examples over 2 processes at batch 8: 4 optimizer steps an epoch, 8 in 2 epochs, and
    the linear schedule spans exactly those (one sized for a single process would stop at
    about half the peak rate). Each logged lr is the rate its step used, as transformers logs it."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    log = metrics["train_log"]
    assert [e["step"] for e in log] == list(range(1, 9))
    assert log[-1]["lr"] > 0 and metrics["final_lr"] == pytest.approx(0.0, abs=1e-12)
    print(run_dir.name, "final lr", metrics["final_lr"], "last step's lr", log[-1]["lr"])


@pytest.fixture(scope="module")
def one(trained) -> Path:
    """The single-process run both multi-process runs must match (batch 16 = 2 x 8), trained
    in this process: the processes under test are the multi-process ones."""
    return trained(*SAME_MATH, "trainer=manual", "batch_size=16")


@pytest.mark.processes
def test_frozen_cache_and_lora_under_two_processes_match_one(tmp_path, trained, encoder_folder):
    """torchrun's two processes of the manual loop: our sharding gives each global step the
    single-process batch, so only float reduction order differs. Here with LoRA adapters
    above a frozen, cached lower layer: each process fills the cache rows of the examples it
    is given (a different share each epoch), and the run is the single process's, its
    best_model merged (no adapter tensors); the plain loop's two processes: the SLURM job of
    two tasks below. On ELECTRA, the family whose
    cache holds most (its embedding projection, frozen and cached with the embeddings); each
    family's cached view against its eager model: tests/test_encoders.py."""
    from safetensors import safe_open

    levers = [
        "trainer=manual",
        "backbone.freeze_layers=1",
        "backbone.cache_frozen=true",
        "model.peft=lora",
        "model.lora.dropout=0.0",
        f"backbone.path={encoder_folder('electra')}",
    ]
    single = trained(*SAME_MATH, *levers, "batch_size=16")
    ddp = _ddp_run(tmp_path, *levers)
    np.testing.assert_allclose(_probabilities(ddp), _probabilities(single), atol=1e-4)
    two, one = (json.loads((r / "metrics.json").read_text()) for r in (ddp, single))
    assert two["test"] == pytest.approx(one["test"], abs=1e-6)
    assert [r["step"] for r in two["history"]] == [r["step"] for r in one["history"]]
    assert two["parameters"]["trainable"] < two["parameters"]["total"] / 2
    with safe_open(str(ddp / "best_model" / "model.safetensors"), "pt") as weights:
        assert not [k for k in weights.keys() if "lora_" in k]  # noqa: SIM118


@pytest.mark.processes
def test_hf_trainer_under_torchrun(tmp_path):
    """transformers' own DDP (its sampler orders data differently, so no exact match)."""
    ddp = _ddp_run(tmp_path, "trainer=hf")
    metrics = json.loads((ddp / "metrics.json").read_text())
    assert [r["step"] for r in metrics["history"]] == [4, 8]  # 64 examples / (8 x 2) per step
    assert metrics["processes"] == 2


def test_shard_and_gather_are_inverse(monkeypatch):
    indices = list(range(7))
    shards = []
    for r in range(3):
        monkeypatch.setenv("WORLD_SIZE", "3")
        monkeypatch.setenv("RANK", str(r))
        shards.append(distributed.shard(indices))
    assert shards == [
        [0, 3, 6],
        [1, 4, 0],
        [2, 5, 1],
    ]  # padded by wrapping, like DistributedSampler
    interleaved = [x for group in zip(*shards, strict=True) for x in group][:7]
    assert interleaved == indices


@pytest.mark.processes
def test_submitit_job_of_two_tasks_is_one_ddp_run(tmp_path, one):
    """hydra/launcher=submitit_local with 2 tasks takes the SLURM path (a pickled job in each
    task, submitit's environment, its logs): one DDP run of the plain manual loop, one folder,
    the single process's results and schedule, a finished row in the sweep's summary."""
    sweep = tmp_path / "sweep"
    _run(
        tmp_path,
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.tasks_per_node=2",
        *SAME_MATH,
        "trainer=manual",
        "batch_size=8",
        "trainer.logging_steps=1",
        f"hydra.sweep.dir={sweep}",
    )
    jobs = [p for p in sweep.iterdir() if (p / ".hydra").is_dir()]
    assert len(jobs) == 1 and (jobs[0] / "metrics.json").is_file()
    metrics = json.loads((jobs[0] / "metrics.json").read_text())
    assert metrics["processes"] == 2
    np.testing.assert_allclose(_probabilities(jobs[0]), _probabilities(one), atol=1e-4)
    single = json.loads((one / "metrics.json").read_text())
    assert metrics["test"] == pytest.approx(single["test"], abs=1e-6)
    assert [r["step"] for r in metrics["history"]] == [r["step"] for r in single["history"]]
    _assert_schedule_ends_at_zero(jobs[0])
    assert json.loads((jobs[0] / "status.json").read_text())["status"] == "finished"
    summary = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["status"] for r in summary] == ["finished"]
    assert len(list(sweep.glob(".submitit/*/*_log.out"))) == 2  # one log per task
