"""Extra metrics through Hugging Face `evaluate`: a local metric module, offline, end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from src.tasks.metrics import CORE, bootstrap_ci, compute

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
    four in metrics.json, report.md and (from metrics.json) the sweep summary."""
    from src.config.compose import compose
    from src.run import train
    from src.sweeps import summary

    module = tmp_path / "positive_share.py"
    module.write_text(METRIC_MODULE)
    job = tmp_path / "sweep" / "0_trainer=hf"
    train(compose(["debug=smoke", "trainer=hf", "epochs=2", f"metrics.extra=[{module}]"]), job)
    (job / ".hydra").mkdir()  # what Hydra records of a sweep's job
    (job / ".hydra" / "overrides.yaml").write_text("- trainer=hf\n")
    metrics = json.loads((job / "metrics.json").read_text())
    rows = list(csv.DictReader((job / "test_predictions.csv").open()))
    share = sum(r["prediction"] == "pos" for r in rows) / len(rows)
    assert metrics["test"]["positive_share"] == share  # the module's formula, on the test split
    assert set(metrics["test"]) == {"accuracy", "precision", "recall", "f1", "positive_share"}
    assert [("positive_share" in row) for row in metrics["history"]] == [True, True]
    assert "positive_share" in (job / "report.md").read_text()
    summary.summarize(tmp_path / "sweep")
    (summary,) = csv.DictReader((tmp_path / "sweep" / "summary.csv").open())
    assert float(summary["test_positive_share"]) == share


def test_unloadable_extra_metric_is_one_line_before_training(tmp_path):
    """It fails while the run is built, before the model is (and so before any training)."""
    from src.config.compose import compose
    from src.config.errors import UserError
    from src.trainers.build import build
    from src.trainers.loggers import NullLogger

    cfg = compose(["debug=smoke", f"metrics.extra=[{tmp_path}/nope.py]"])
    with pytest.raises(UserError) as caught:
        build(cfg, NullLogger())
    line = str(caught.value)
    assert line.startswith(f"metrics.extra: cannot load '{tmp_path}/nope.py'") and "\n" not in line
    assert "offline, give the path of a local metric module" in line


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


@pytest.mark.parametrize("num_labels", [2, 3, 5])
def test_metrics_are_scikit_learns(num_labels):
    """The confusion-count formulas (one pass for all bootstrap resamples) give what
    scikit-learn's accuracy_score and precision_recall_fscore_support give, zero_division=0
    included: a class never predicted, a class never true, one class only."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    rng = np.random.default_rng(num_labels)
    for trial in range(200):
        n = int(rng.integers(1, 60))
        labels, preds = rng.integers(0, num_labels, n), rng.integers(0, num_labels, n)
        if trial % 5 == 0:
            preds = np.zeros(n, dtype=int)
        if trial % 7 == 0:
            labels = np.full(n, num_labels - 1)
        precision, recall, f1, _ = precision_recall_fscore_support(
            labels,
            preds,
            average="binary" if num_labels == 2 else "macro",
            zero_division=0,
            labels=None if num_labels == 2 else range(num_labels),
        )
        expected = {
            "accuracy": accuracy_score(labels, preds),
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
        assert compute(labels, preds, num_labels) == pytest.approx(expected, abs=1e-12)
