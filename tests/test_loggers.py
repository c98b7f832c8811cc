"""Loggers: both trainers write the same scalar tags; csv holds what tensorboard holds."""

from __future__ import annotations

import csv
import json

import pytest

from src.config.rundir import SCALARS_FILE, TENSORBOARD_DIR
from src.run import train

EXPECTED_TAGS = {
    "train/loss",
    "train/learning_rate",
    "eval/accuracy",
    "eval/precision",
    "eval/recall",
    "eval/f1",
}


@pytest.mark.parametrize("model", ["hf_head", "custom_head"])  # trainer=hf, trainer=manual
def test_tensorboard_event_files_hold_the_scalars(trained_runs, model):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = trained_runs[model]
    events = EventAccumulator(str(run / TENSORBOARD_DIR))
    events.Reload()
    assert set(events.Tags()["scalars"]) >= EXPECTED_TAGS

    metrics = json.loads((run / "metrics.json").read_text())
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [r["step"] for r in metrics["train_log"]]
    assert [e.value for e in losses] == pytest.approx([r["loss"] for r in metrics["train_log"]])
    f1 = events.Scalars("eval/f1")
    assert [e.step for e in f1] == [r["step"] for r in metrics["history"]]
    assert [e.value for e in f1] == pytest.approx([r["f1"] for r in metrics["history"]])


def test_csv_logger_under_the_hf_trainer(compose_cfg, tmp_path):
    train(compose_cfg("debug=smoke", "trainer=hf", "logger=csv"), tmp_path)
    rows = list(csv.DictReader((tmp_path / SCALARS_FILE).open()))
    assert {r["tag"] for r in rows} >= EXPECTED_TAGS
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    losses = [(int(r["step"]), float(r["value"])) for r in rows if r["tag"] == "train/loss"]
    assert losses == [(e["step"], pytest.approx(e["loss"])) for e in metrics["train_log"]]
    assert not (tmp_path / TENSORBOARD_DIR).exists()
