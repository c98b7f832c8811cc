"""Metrics: the four core ones computed locally with scikit-learn (offline, fast), plus any
extra metric module Hugging Face `evaluate` can load (`metrics.extra=[name or local path]`).

`REGISTRY` owns what every table, sort and card says about a metric: its name, its place in
the order, which way is better and whether it pools labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from src.errors import UserError
from src.schema import Spec, param


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool = True
    pools_labels: bool = True  # binary (positive label) for two labels, macro for more


REGISTRY = {
    m.name: m
    for m in (
        MetricInfo("accuracy", pools_labels=False),
        MetricInfo("precision"),
        MetricInfo("recall"),
        MetricInfo("f1"),
    )
}
CORE = tuple(REGISTRY)  # the core metrics, in the order every table shows them


def higher_is_better(name: str) -> bool:
    """Which way `name` improves; an extra metric (metrics.extra) is taken as a score."""
    info = REGISTRY.get(name)
    return info.higher_is_better if info else True


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits, row by row (shifted by the row's max: no overflow)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def average(num_labels: int) -> str:
    """How precision, recall and F1 pool the labels (sklearn's `average`; the model card says it):
    the positive label (id 1) of two, else the unweighted mean over labels."""
    return "binary" if num_labels == 2 else "macro"


def compute(labels: np.ndarray, preds: np.ndarray, num_labels: int) -> dict[str, float]:
    """accuracy, precision, recall, F1: binary for two labels (positive = id 1), macro for more
    (scikit-learn's definitions with zero_division=0, from the confusion counts)."""
    scores = _scores(np.asarray(labels)[None], np.asarray(preds)[None], num_labels)
    return {m: float(v[0]) for m, v in scores.items()}


def _scores(labels: np.ndarray, preds: np.ndarray, k: int) -> dict[str, np.ndarray]:
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
    return {"accuracy": tp.sum(1) / n, "precision": pooled(precision),
            "recall": pooled(recall), "f1": pooled(f1)}  # fmt: skip


def _ratio(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """part / whole, 0 where whole is 0 (scikit-learn's zero_division=0)."""
    return np.divide(part, whole, out=np.zeros(part.shape), where=whole > 0)


BOOTSTRAP_RESAMPLES = 1000


def bootstrap_ci(
    labels: np.ndarray, preds: np.ndarray, num_labels: int, resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0, level: float = 0.95,
) -> dict[str, list[float]]:  # fmt: skip
    """A percentile bootstrap interval for each core metric: the test examples are resampled
    with replacement `resamples` times (seeded, so a rerun gives the same interval), each
    resample is scored, and the interval spans the middle `level` of those scores."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    draws = np.random.default_rng(seed).integers(0, len(labels), (resamples, len(labels)))
    scores = _scores(labels[draws], preds[draws], num_labels)
    tails = [50 * (1 - level), 50 * (1 + level)]
    return {m: [float(q) for q in np.percentile(scores[m], tails)] for m in CORE}


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


def paired_differences(labels: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray,
                       num_labels: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                       ) -> list[PairedDifference]:  # fmt: skip
    """Each core metric's B - A with a paired-bootstrap interval: every resample draws the same
    examples for both runs, so what the two runs share (which examples are hard) cancels out;
    accuracy also gets McNemar's exact p-value."""
    labels, a, b = (np.asarray(x) for x in (labels, preds_a, preds_b))
    draws = np.random.default_rng(seed).integers(0, len(labels), (resamples, len(labels)))
    of_a, of_b = (
        _scores(labels[draws], a[draws], num_labels),
        _scores(labels[draws], b[draws], num_labels),
    )
    whole_a, whole_b = compute(labels, a, num_labels), compute(labels, b, num_labels)
    out = []
    for m in CORE:
        low, high = (float(q) for q in np.percentile(of_b[m] - of_a[m], [2.5, 97.5]))
        p_value = mcnemar(labels, a, b) if m == "accuracy" else None
        out.append(PairedDifference(m, whole_b[m] - whole_a[m], (low, high), p_value))
    return out


def mcnemar(labels: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray) -> float:
    """McNemar's exact test: the two-sided binomial p-value of the examples exactly one of the
    two runs got right (1.0 when there are none)."""
    from scipy.stats import binomtest

    right_a, right_b = np.asarray(preds_a) == labels, np.asarray(preds_b) == labels
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

    def build(self, num_labels: int, eval_docs: Sequence[int] = (), pooling: str = "logits"):
        """Load every extra module now, so that a bad name fails before any training."""
        return Scorer(num_labels, [_load(name) for name in self.extra], eval_docs, pooling)


CHUNK_POOLINGS = ("logits", "probs")  # how a document's windows are pooled (chunk_pooling)


def pool(logits: np.ndarray, docs: Sequence[int], how: str = "logits") -> np.ndarray:
    """One row per document from its windows' rows: the mean of their logits, or (`probs`) the
    log of their mean class probabilities, so that a softmax of the result gives that mean."""
    logits, docs = np.asarray(logits, dtype=np.float64), np.asarray(docs)
    if how == "probs":
        logits = softmax(logits)
    sums = np.zeros((docs.max() + 1, logits.shape[1]))
    np.add.at(sums, docs, logits)
    mean = sums / np.bincount(docs)[:, None]
    return np.log(mean) if how == "probs" else mean


def doc_labels(labels: np.ndarray, docs: Sequence[int]) -> np.ndarray:
    """One label per document (its windows all carry it)."""
    out = np.zeros(max(docs) + 1, dtype=np.asarray(labels).dtype)
    out[np.asarray(docs)] = labels
    return out


class Scorer:
    """logits, labels -> {core metrics, extra metrics}: the trainers' `metrics_fn`. Window rows
    of the eval split are pooled into documents first (`eval_docs`), so every evaluation counts
    documents, never windows."""

    def __init__(self, num_labels: int, extra: Sequence[Any] = (), eval_docs: Sequence[int] = (),
                 pooling: str = "logits") -> None:  # fmt: skip
        self.num_labels, self.extra = num_labels, list(extra)
        self.eval_docs, self.pooling = list(eval_docs), pooling

    def __call__(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        if self.eval_docs and len(logits) == len(self.eval_docs):
            logits = pool(logits, self.eval_docs, self.pooling)
            labels = doc_labels(labels, self.eval_docs)
        return self.score(logits, labels)

    def score(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Document-level logits and labels -> metrics."""
        preds = np.asarray(logits).argmax(-1)
        out = compute(labels, preds, self.num_labels)
        for module in self.extra:
            result = module.compute(predictions=preds, references=labels) or {}
            for key, value in result.items():
                if np.isscalar(value) and key not in CORE:  # the core four stay sklearn's
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


def report(labels: np.ndarray, preds: np.ndarray, label_names: Sequence[str]) -> str:
    from sklearn.metrics import classification_report

    return classification_report(
        labels,
        preds,
        labels=list(range(len(label_names))),
        target_names=list(label_names),
        digits=4,
        zero_division=0,
    )
