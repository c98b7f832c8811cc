"""A run says when its model predicts one thing: each task's check fires on a constant model
and stays silent on one that learnt; the warning reaches the log, metrics.json, report.md, the
sweep summary and src.compare."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from src.tasks import MultiLabel, Regression, SingleLabel

BALANCED = np.array([0, 1] * 50)


@pytest.mark.parametrize(
    ("task", "truth", "preds", "fires"),
    [
        (SingleLabel(), BALANCED, np.zeros(100, int), "predicts 'neg' for 100% of the texts"),
        (SingleLabel(), BALANCED, np.r_[np.zeros(96, int), np.ones(4, int)], "for 96% of"),
        (SingleLabel(), BALANCED, np.r_[np.zeros(90, int), np.ones(10, int)], None),
        (SingleLabel(), np.r_[np.zeros(80, int), np.ones(20, int)], np.zeros(100, int), None),
        (
            MultiLabel(),
            np.eye(4, dtype=bool)[[0, 1, 2, 3] * 5],
            np.zeros((20, 4), bool),
            "predicts no label for every text",
        ),
        (
            MultiLabel(),
            np.eye(4, dtype=bool)[[0, 1, 2, 3] * 5],
            np.ones((20, 4), bool),
            "predicts every label for every text",
        ),
        (
            MultiLabel(),
            np.eye(4, dtype=bool)[[0, 1, 2, 3] * 5],
            np.eye(4, dtype=bool)[[0, 1, 2, 3] * 5],
            None,
        ),
        (Regression(), np.linspace(-3, 3, 50), np.full(50, 0.8), "the predictions barely vary"),
        (Regression(), np.linspace(-3, 3, 50), np.linspace(-2, 2, 50), None),
    ],
)
def test_each_task_says_when_its_model_predicts_one_thing(task, truth, preds, fires):
    line = task.degenerate(truth, preds, ["neg", "pos"])
    if fires is None:
        assert line is None
    else:
        assert fires in line and "try " in line and "\n" not in line


def test_a_constant_run_says_so_everywhere(trained, tmp_path, caplog):
    """A tiny run whose step is too small to move its random head predicts one class: the log,
    metrics.json, report.md, the sweep summary and src.compare say so; a run that learnt its
    data says nothing."""
    from src import compare
    from src.outputs.trained import sweep_jobs

    stuck = trained("debug=smoke", "lr=1e-9", "model=hf_head", "trainer=manual")
    metrics = json.loads((stuck / "metrics.json").read_text())
    assert [w for w in metrics["warnings"] if w.startswith("test: the model predicts '")]
    assert "> **Warning:** test: the model predicts" in (stuck / "report.md").read_text()
    rows = compare.metric_rows([compare.Run.read(stuck)])
    assert any(label == "warning" and "predicts" in cells[0] for label, cells in rows)
    sweep = tmp_path / "sweep"
    (sweep / "0_lr=1e-9" / ".hydra").mkdir(parents=True)
    (sweep / "0_lr=1e-9" / ".hydra" / "overrides.yaml").write_text("- lr=1e-9\n")
    (sweep / "0_lr=1e-9" / "metrics.json").write_text(json.dumps(metrics))
    (job,) = sweep_jobs(sweep)
    assert job.status == "finished" and job.error.startswith("warning: test: the model predicts")
    with caplog.at_level(logging.WARNING):
        from src.trainers.build import build
        from src.trainers.loggers import NullLogger
        from tests.conftest import compose

        built = build(compose(["debug=smoke", "lr=1e-9", "model=hf_head"]), NullLogger())
        built.scorer.evaluate(
            built.encoded["eval"], lambda examples: np.tile([5.0, -5.0], (len(examples), 1))
        )
    assert "evaluation: the model predicts 'neg' for 100% of the texts" in caplog.text
