"""Metrics computed locally with scikit-learn (works offline); extras through `evaluate`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from src.errors import UserError

CORE = ("accuracy", "precision", "recall", "f1")


def compute(
    labels: np.ndarray, preds: np.ndarray, num_labels: int, extra: Sequence[str] = ()
) -> dict:
    """accuracy, precision, recall, F1: binary for two labels (positive = id 1), macro for more."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    average = "binary" if num_labels == 2 else "macro"
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels,
        preds,
        average=average,
        zero_division=0,
        labels=None if num_labels == 2 else range(num_labels),
    )
    out = {
        "accuracy": float(accuracy_score(labels, preds)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }
    for name in extra:
        out.update(_evaluate_metric(name, labels, preds))
    return out


def _evaluate_metric(name: str, labels: np.ndarray, preds: np.ndarray) -> dict:
    import evaluate

    try:
        metric = evaluate.load(name)
    except Exception as e:  # evaluate raises FileNotFoundError, ConnectionError, ImportError...
        raise UserError(
            f"metrics.extra: cannot load '{name}' with evaluate ({type(e).__name__}); "
            "offline, give the path of a local metric script"
        ) from None
    result = metric.compute(predictions=preds, references=labels)
    return {k: float(v) for k, v in result.items() if np.isscalar(v)}


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
