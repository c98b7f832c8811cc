"""Extra metrics through Hugging Face `evaluate`: a local metric module, offline, end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from src.metrics import CORE, bootstrap_ci, compute
from tests.conftest import run_cli

METRIC_MODULE = '''"""The share of predictions equal to 1 (a metric module written by the test)."""

import datasets
import evaluate


class PositiveShare(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="share of predictions equal to 1",
            citation="",
            inputs_description="predictions and references: class ids",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        return {"positive_share": sum(p == 1 for p in predictions) / len(predictions)}
'''


def test_extra_metric_from_a_local_module(tmp_path):
    """metrics.extra=[path]: computed at every evaluation and on test, written beside the core
    four in metrics.json, report.md and the sweep summary."""
    module = tmp_path / "positive_share.py"
    module.write_text(METRIC_MODULE)
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m", "debug=smoke", "trainer=hf", "epochs=2", f"metrics.extra=[{module}]",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job,) = [p for p in sweep.iterdir() if (p / "metrics.json").is_file()]
    metrics = json.loads((job / "metrics.json").read_text())
    rows = list(csv.DictReader((job / "test_predictions.csv").open()))
    share = sum(r["prediction"] == "pos" for r in rows) / len(rows)
    assert metrics["test"]["positive_share"] == share  # the module's formula, on the test split
    assert set(metrics["test"]) == {"accuracy", "precision", "recall", "f1", "positive_share"}
    assert [("positive_share" in row) for row in metrics["history"]] == [True, True]
    assert "positive_share" in (job / "report.md").read_text()
    (summary,) = csv.DictReader((sweep / "summary.csv").open())
    assert float(summary["test_positive_share"]) == share


def test_unloadable_extra_metric_is_one_line_before_training(tmp_path):
    proc = run_cli(
        "debug=smoke", f"metrics.extra=[{tmp_path}/nope.py]", f"hydra.run.dir={tmp_path}/run"
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: metrics.extra: cannot load '{tmp_path}/nope.py'")
    assert "offline, give the path of a local metric module" in lines[-1]
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


def test_bootstrap_interval_holds_the_estimate_and_narrows_as_n_grows():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 400, 1600):
        labels = rng.integers(0, 2, n)
        preds = np.where(rng.random(n) < 0.85, labels, 1 - labels)  # about 85% right
        point, ci = compute(labels, preds, 2), bootstrap_ci(labels, preds, 2)
        assert all(ci[m][0] <= point[m] <= ci[m][1] for m in CORE)
        widths.append(ci["accuracy"][1] - ci["accuracy"][0])
    assert widths[0] > widths[1] > widths[2]  # roughly 1 / sqrt(n): halves per 4x
    assert widths[1] == pytest.approx(2 * 1.96 * (0.85 * 0.15 / 400) ** 0.5, rel=0.25)
    assert bootstrap_ci(labels, preds, 2) == bootstrap_ci(labels, preds, 2)  # seeded
