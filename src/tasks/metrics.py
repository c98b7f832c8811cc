"""Metrics: each task's own (single-label, multi-label, regression), computed locally with numpy
from their definitions (offline, fast; tested equal to scikit-learn and scipy), plus any extra
metric module Hugging Face `evaluate` can load (`metrics.extra=[name or local path]`).

`REGISTRY` owns what every table, sort and card says about a metric: its name, its task, its
place in the order, which way is better and whether it pools labels. Every task's scores are
computed for many rows of (truth, prediction) arrays at once, so the bootstrap scores all of
its resamples in one pass (in blocks that bound the memory)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from src.config.errors import UserError
from src.config.schema import Spec, param
from src.tasks import inference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricInfo:
    name: str
    task: str = "single_label"
    higher_is_better: bool = True
    pools_labels: bool = False  # single-label: binary (positive label) for two labels, else macro


REGISTRY = {
    m.name: m
    for m in (
        MetricInfo("accuracy"),
        MetricInfo("precision", pools_labels=True),
        MetricInfo("recall", pools_labels=True),
        MetricInfo("f1", pools_labels=True),
        MetricInfo("f1_micro", "multi_label"),
        MetricInfo("f1_macro", "multi_label"),
        MetricInfo("precision_micro", "multi_label"),
        MetricInfo("recall_micro", "multi_label"),
        MetricInfo("subset_accuracy", "multi_label"),
        MetricInfo("hamming_loss", "multi_label", higher_is_better=False),
        MetricInfo("mse", "regression", higher_is_better=False),
        MetricInfo("mae", "regression", higher_is_better=False),
        MetricInfo("pearson", "regression"),
        MetricInfo("spearman", "regression"),
    )
}
TASKS = ("single_label", "multi_label", "regression")
# each task's metrics, in the order every table shows them
TASK_METRICS = {t: tuple(m for m, info in REGISTRY.items() if info.task == t) for t in TASKS}
CORE = TASK_METRICS["single_label"]
# per task: the two test metrics a sweep's table shows beside the best eval value
HEADLINE = {
    "single_label": ("accuracy", "f1"),
    "multi_label": ("f1_micro", "subset_accuracy"),
    "regression": ("mse", "pearson"),
}
# the per-example right-or-wrong metric McNemar's test pairs (none for regression)
EXACT = {"single_label": "accuracy", "multi_label": "subset_accuracy"}


def task_of(record: dict) -> str:
    """A metrics.json's task (runs from before tasks existed are single-label)."""
    task = record.get("task") or {}
    return task.get("name", "single_label") if isinstance(task, dict) else str(task)


def higher_is_better(name: str) -> bool:
    """Which way `name` improves; an extra metric (metrics.extra) is taken as a score."""
    info = REGISTRY.get(name)
    return info.higher_is_better if info else True


def average(num_labels: int) -> str:
    """How precision, recall and F1 pool the labels (sklearn's `average`; the model card says it):
    the positive label (id 1) of two, else the unweighted mean over labels."""
    return "binary" if num_labels == 2 else "macro"


def compute(
    labels: np.ndarray, preds: np.ndarray, num_labels: int, task: str = "single_label"
) -> dict[str, float]:
    """The task's metrics of one set of predictions. Single-label: accuracy, precision, recall,
    F1, binary for two labels (positive = id 1), macro for more (scikit-learn's definitions with
    zero_division=0, from the confusion counts). Multi-label (multi-hot truth and predictions):
    micro and macro F1, micro precision and recall, subset accuracy, Hamming loss. Regression:
    MSE, MAE, Pearson's and Spearman's correlation (0 where one side is constant)."""
    scores = SCORES[task](np.asarray(labels)[None], np.asarray(preds)[None], num_labels)
    return {m: float(v[0]) for m, v in scores.items()}


def _single_label(labels: np.ndarray, preds: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """The core metrics of each row of (rows, n) label and prediction arrays, all rows at once:
    one confusion matrix per row (a bincount), then the counts' formulas."""
    rows, n = labels.shape
    cells = (labels * k + preds + np.arange(rows)[:, None] * k * k).ravel()
    confusion = np.bincount(cells, minlength=rows * k * k).reshape(rows, k, k)
    tp = np.diagonal(confusion, axis1=1, axis2=2).astype(np.float64)
    precision = _ratio(tp, confusion.sum(1))  # of the predicted c, the true c
    recall = _ratio(tp, confusion.sum(2))  # of the true c, the predicted c
    f1 = _ratio(2 * precision * recall, precision + recall)
    pooled = (lambda v: v[:, 1]) if average(k) == "binary" else (lambda v: v.mean(1))
    return {
        "accuracy": tp.sum(1) / n,
        "precision": pooled(precision),
        "recall": pooled(recall),
        "f1": pooled(f1),
    }


def _multi_label(labels: np.ndarray, preds: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """(rows, n, labels) multi-hot truth and predictions -> each row's multi-label metrics."""
    truth, guess = labels.astype(bool), preds.astype(bool)
    tp = (truth & guess).sum(1).astype(np.float64)  # (rows, labels)
    fp, fn = (~truth & guess).sum(1), (truth & ~guess).sum(1)
    all_tp, all_fp, all_fn = tp.sum(-1), fp.sum(-1), fn.sum(-1)
    return {
        "f1_micro": _ratio(2 * all_tp, 2 * all_tp + all_fp + all_fn),
        "f1_macro": _ratio(2 * tp, 2 * tp + fp + fn).mean(-1),
        "precision_micro": _ratio(all_tp, all_tp + all_fp),
        "recall_micro": _ratio(all_tp, all_tp + all_fn),
        "subset_accuracy": (truth == guess).all(-1).mean(-1),
        "hamming_loss": (truth != guess).mean((-2, -1)),
    }


def _regression(labels: np.ndarray, preds: np.ndarray, k: int = 1) -> dict[str, np.ndarray]:
    """(rows, n) true and predicted values -> each row's regression metrics."""
    from scipy.stats import rankdata

    truth, guess = labels.astype(np.float64), preds.astype(np.float64)
    error = guess - truth
    return {
        "mse": (error**2).mean(-1),
        "mae": np.abs(error).mean(-1),
        "pearson": _correlation(truth, guess),
        "spearman": _correlation(rankdata(truth, axis=-1), rankdata(guess, axis=-1)),
    }


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson's r of each row's pair of vectors; 0 where either is constant."""
    a, b = a - a.mean(-1, keepdims=True), b - b.mean(-1, keepdims=True)
    return np.clip(_ratio((a * b).sum(-1), np.sqrt((a * a).sum(-1) * (b * b).sum(-1))), -1, 1)


def _ratio(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """part / whole, 0 where whole is 0 (scikit-learn's zero_division=0)."""
    part, whole = np.broadcast_arrays(np.asarray(part, np.float64), whole)
    return np.divide(part, whole, out=np.zeros(part.shape), where=whole > 0)


SCORES = {"single_label": _single_label, "multi_label": _multi_label, "regression": _regression}
BOOTSTRAP_RESAMPLES = 1000
BLOCK_CELLS = 2**24  # resampled cells scored at once: bounds the bootstrap's memory


def resampled(
    labels: np.ndarray, preds: np.ndarray, k: int, task: str, draws: np.ndarray
) -> dict[str, np.ndarray]:
    """The task's metrics of each resample (a row of `draws`: example indices), in blocks."""
    cells = max(1, labels[:1].size) * draws.shape[1]
    block = max(1, BLOCK_CELLS // cells)
    parts = [
        SCORES[task](labels[rows], preds[rows], k)
        for rows in (draws[i : i + block] for i in range(0, len(draws), block))
    ]
    return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}


def bootstrap_ci(
    labels: np.ndarray,
    preds: np.ndarray,
    num_labels: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
    task: str = "single_label",
) -> dict[str, list[float]]:
    """A percentile bootstrap interval for each of the task's metrics: the test examples are
    resampled with replacement `resamples` times (seeded, so a rerun gives the same interval),
    each resample is scored, and the interval spans the middle `level` of those scores."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    draws = np.random.default_rng(seed).integers(0, len(labels), (resamples, len(labels)))
    scores = resampled(labels, preds, num_labels, task, draws)
    tails = [50 * (1 - level), 50 * (1 + level)]
    return {m: [float(q) for q in np.percentile(scores[m], tails)] for m in TASK_METRICS[task]}


@dataclass(frozen=True)
class PairedDifference:
    """How run B's score on a test split differs from run A's on the same examples."""

    metric: str
    difference: float  # B - A on the whole split
    interval: tuple[float, float]  # the paired bootstrap's 95% interval of B - A
    p_value: float | None = None  # McNemar's exact test (accuracy)

    @property
    def distinguishable(self) -> bool:
        """For accuracy, McNemar's exact test at 5%; for the others, an interval without 0."""
        if self.p_value is not None:
            return self.p_value < 0.05
        return self.interval[0] > 0 or self.interval[1] < 0

    @property
    def b_is_better(self) -> bool:
        return (self.difference > 0) == higher_is_better(self.metric)


def paired_differences(
    labels: np.ndarray,
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    num_labels: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    task: str = "single_label",
) -> list[PairedDifference]:
    """Each of the task's metrics' B - A with a paired-bootstrap interval: every resample draws
    the same examples for both runs, so what the two runs share (which examples are hard)
    cancels out; the per-example exact metric (accuracy, subset accuracy) also gets McNemar's
    exact p-value."""
    labels, a, b = (np.asarray(x) for x in (labels, preds_a, preds_b))
    draws = np.random.default_rng(seed).integers(0, len(labels), (resamples, len(labels)))
    of_a, of_b = (resampled(labels, p, num_labels, task, draws) for p in (a, b))
    whole_a, whole_b = (compute(labels, p, num_labels, task) for p in (a, b))
    out = []
    for m in TASK_METRICS[task]:
        low, high = (float(q) for q in np.percentile(of_b[m] - of_a[m], [2.5, 97.5]))
        p_value = mcnemar(labels, a, b) if m == EXACT.get(task) else None
        out.append(PairedDifference(m, whole_b[m] - whole_a[m], (low, high), p_value))
    return out


def mcnemar(labels: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray) -> float:
    """McNemar's exact test: the two-sided binomial p-value of the examples exactly one of the
    two runs got right (1.0 when there are none); a multi-label example is right when its
    whole label set is."""
    from scipy.stats import binomtest

    labels, a, b = (np.asarray(x) for x in (labels, preds_a, preds_b))
    right_a, right_b = a == labels, b == labels
    if right_a.ndim > 1:
        right_a, right_b = right_a.all(-1), right_b.all(-1)
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    return float(binomtest(only_b, only_a + only_b).pvalue) if only_a + only_b else 1.0


@dataclass
class Metrics(Spec):
    """What every evaluation and the test split are scored with."""

    extra: list[str] = param(
        [],
        "evaluate modules by hub name or local path (.py file or folder)",
        test=lambda v: isinstance(v, list) and all(isinstance(x, str) and x for x in v),
        allowed="a list of evaluate metric names or paths",
    )

    def build(
        self,
        task: Any,
        num_labels: int,
        pooling: str = "logits",
        names: Sequence[str] | None = None,
    ) -> Scorer:
        """Load every extra module now, so that a bad name fails before any training."""
        extra = [_load(name) for name in self.extra]
        return Scorer(task, num_labels, extra, pooling, names)


class Scorer:
    """Encoded examples -> {the task's metrics, extra metrics}: the trainers' `metrics_fn`.
    Examples go through src.tasks.inference, which pools a document's windows (`pooling`), so every
    evaluation counts documents, never windows. `task` (src.tasks) turns the examples' targets
    back into labels and logits into predictions."""

    def __init__(
        self,
        task: Any,
        num_labels: int,
        extra: Sequence[Any] = (),
        pooling: str = "logits",
        names: Sequence[str] | None = None,
    ) -> None:
        self.task, self.num_labels, self.extra = task, num_labels, list(extra)
        self.pooling, self.names = pooling, names

    def evaluate(self, examples: Any, backend: Any) -> dict[str, float]:
        """An evaluation of encoded examples through `backend` (src.tasks.inference)."""
        return self(self.logits(examples, backend), inference.truth(examples))

    def logits(self, examples: Any, backend: Any) -> np.ndarray:
        """One row per document of `examples` through `backend`, pooled as evaluation pools."""
        return inference.documents(examples, backend, self.pooling)

    def __call__(self, logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """An evaluation's metrics from one row of logits and one target per document; a model
        that predicts one thing says so in the log."""
        truth = self.task.truth_of_targets(targets)
        if line := self.degenerate(logits, truth):
            log.warning(f"evaluation: {line}")
        return self.score(logits, truth)

    def degenerate(self, logits: np.ndarray, truth: np.ndarray) -> str | None:
        """The task's one-line warning when the model predicts one thing (src.tasks)."""
        return self.task.degenerate(truth, self.task.decide(logits), self.names)

    def score(self, logits: np.ndarray, truth: np.ndarray) -> dict[str, float]:
        """Document-level logits and true labels (ids, multi-hot rows or values) -> metrics."""
        preds = self.task.decide(logits)
        out = compute(truth, preds, self.num_labels, self.task.NAME)
        for module in self.extra:
            result = module.compute(predictions=preds, references=truth) or {}
            for key, value in result.items():
                if np.isscalar(value) and key not in REGISTRY:  # the task's own stay ours
                    out[key] = float(value)
        return out


def _load(name: str):
    import evaluate

    try:
        return evaluate.load(name)
    except Exception as e:  # evaluate raises FileNotFoundError, ConnectionError, ImportError...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(
            f"metrics.extra: cannot load '{name}' with evaluate "
            f"({type(e).__name__}: {first[:200]}); offline, give the path of a local metric "
            "module (.py or folder)"
        ) from None


def report(
    labels: np.ndarray, preds: np.ndarray, label_names: Sequence[str], task: str = "single_label"
) -> str:
    """classification_report.txt: scikit-learn's per-label report (multi-label: on the label
    indicator matrix, with micro, macro and per-example averages); for regression, the metrics
    and the residuals' spread."""
    from sklearn.metrics import classification_report

    if task == "regression":
        truth, guess = np.asarray(labels, np.float64), np.asarray(preds, np.float64)
        scores, residual = compute(truth, guess, 1, task), guess - truth
        rows = [
            *scores.items(),
            ("mean residual", residual.mean()),
            ("residual std", residual.std()),
            ("true mean", truth.mean()),
            ("true std", truth.std()),
            ("examples", len(truth)),
        ]
        return "".join(
            f"{name:>16}  {value:.4f}\n" if isinstance(value, float) else f"{name:>16}  {value}\n"
            for name, value in rows
        )
    return classification_report(
        labels,
        preds,
        labels=list(range(len(label_names))),
        target_names=list(label_names),
        digits=4,
        zero_division=0,
    )
