"""logger=wandb, offline (no account, no network): what a run leaves in its W&B files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from src.config.compose import compose
from src.config.errors import UserError
from src.run import train
from src.trainers.loggers.wandb import WANDB_DIR, WandbLogger


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("wandb") / "run"
    train(compose(["debug=smoke", "logger=wandb", "logger.mode=offline", "epochs=2"]), run_dir)
    _written()
    return run_dir


def _written() -> None:
    """Wait for W&B's service to write what the finished runs sent it: `run.finish()` returns
    before the .wandb file is written (wandb 0.31: 7 bytes, then 1.5 KB, in one try of four);
    the service writes it by the time the process ends, which is when `wandb sync` reads it."""
    import wandb

    wandb.teardown()


def test_an_offline_run_records_config_scalars_test_metrics_and_images(offline_run):
    """The run's record (W&B's .wandb file) holds the config, each scalar tag, the test metrics
    and their intervals; report.md's images are its media; metrics.json's numbers are there."""
    (offline,) = (offline_run / WANDB_DIR).glob("offline-run-*")
    record = next(offline.glob("run-*.wandb")).read_bytes()
    metrics = json.loads((offline_run / "metrics.json").read_text())
    for key in (
        "eval/accuracy",
        "train/loss",
        "train/learning_rate",
        "test/accuracy",
        "test/accuracy_ci95_low",
        "test/f1_ci95_high",
        "trainer",
        "metric_for_best_model",
    ):
        assert key.encode() in record, key
    for value in (metrics["test"]["accuracy"], metrics["history"][-1]["f1"]):
        assert json.dumps(value).encode() in record, value
    images = {p.name.rsplit("_", 2)[0] for p in (offline / "files" / "media").rglob("*.png")}
    assert images == {"confusion_matrix", "learning_curve"}


def test_a_sweeps_jobs_are_one_group(tmp_path):
    """A sweep's job is a W&B run named after its folder, in the group named after the sweep
    folder (src.trainers.loggers.mlflow.sweep_of reads Hydra's record of the job, as it does
    for MLflow: tests/test_sweeps.py runs that on a real multirun); a single run has no group,
    unless logger.group names one."""
    import yaml
    from wandb.proto.wandb_internal_pb2 import RunRecord

    sweep = tmp_path / "sweep"
    job = sweep / "0_debug=smoke,dropout=0.1"
    (job / ".hydra").mkdir(parents=True)
    hydra = {"hydra": {"mode": "MULTIRUN", "sweep": {"dir": str(sweep), "subdir": job.name}}}
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    logger = WandbLogger(job, mode="offline")
    logger.log({"train/loss": 1.0}, 1)
    logger.close()
    _written()
    (offline,) = (job / WANDB_DIR).glob("offline-run-*")
    record = next(offline.glob("run-*.wandb")).read_bytes()
    for field in ({"run_group": sweep.as_posix()}, {"display_name": job.name}):
        assert RunRecord(**field).SerializeToString() in record, field  # the run's fields
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


def test_online_without_a_login_is_one_line_before_the_run(tmp_path, monkeypatch):
    """No WANDB_API_KEY, no ~/.netrc, no terminal: one line naming the fixes; no W&B run."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal: no prompt
    with pytest.raises(UserError, match=r"logger=wandb: no W&B login .*wandb login.*offline"):
        WandbLogger(tmp_path / "run", mode="online")
    assert not (tmp_path / "run" / WANDB_DIR).exists()
