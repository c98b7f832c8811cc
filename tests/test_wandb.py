"""logger=wandb, offline (no account, no network): what a run leaves in its W&B files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from src.compose import compose
from src.errors import UserError
from src.loggers.wandb import WANDB_DIR, WandbLogger
from src.run import train


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("wandb") / "run"
    train(compose(["debug=smoke", "logger=wandb", "logger.mode=offline", "epochs=2"]), run_dir)
    return run_dir


def test_an_offline_run_records_config_scalars_test_metrics_and_images(offline_run):
    """The run's record (W&B's .wandb file) holds the config, each scalar tag, the test metrics
    and their intervals; report.md's images are its media; metrics.json's numbers are there."""
    (offline,) = (offline_run / WANDB_DIR).glob("offline-run-*")
    record = next(offline.glob("run-*.wandb")).read_bytes()
    metrics = json.loads((offline_run / "metrics.json").read_text())
    for key in ("eval/accuracy", "train/loss", "train/learning_rate", "test/accuracy",
                "test/accuracy_ci95_low", "test/f1_ci95_high", "trainer", "metric_for_best_model"):
        assert key.encode() in record, key
    for value in (metrics["test"]["accuracy"], metrics["history"][-1]["f1"]):
        assert json.dumps(value).encode() in record, value
    images = {p.name.rsplit("_", 2)[0] for p in (offline / "files" / "media").rglob("*.png")}
    assert images == {"confusion_matrix", "learning_curve"}


def test_a_sweeps_jobs_are_one_group(tmp_path):
    hydra = {"mode": "MULTIRUN", "sweep": {"dir": "s", "subdir": "${hydra.job.num}"},
             "job": {"num": 0}}  # fmt: skip
    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
    assert WandbLogger(job, mode="offline").group == (tmp_path / "sweep").as_posix()
    assert WandbLogger(tmp_path / "single", mode="offline").group is None
    assert WandbLogger(job, mode="offline", group="mine").group == "mine"


def test_mistakes_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="logger.mode=cloud: one of online, offline, disabled"):
        WandbLogger(tmp_path, mode="cloud")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "wandb" else real(n, *a)
    )
    with pytest.raises(UserError, match="logger=wandb needs the wandb package: pip install"):
        WandbLogger(tmp_path, mode="offline")
