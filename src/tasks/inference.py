"""The one inference path: encoded examples -> one row of logits per document.

    logits = inference.documents(examples, backend, pooling)

A backend computes every example's logits (an example is a text, a pair, or one window of a
long text cut by `truncation=chunks`), in the examples' order; `documents` then pools each
document's windows into its row, here and nowhere else. What goes through it: both trainers'
evaluation (src.tasks.metrics.Scorer.evaluate), the run's test scoring and threshold tuning
(src.run), src.predict, src.evaluate and src.export's check. The backends:
- `src.trainers.forward.forward`: batches, longest first, through a torch module or an
  exported model (src.models.exported.OnnxModel, called as the module is); under torchrun each
  process forwards its share and the rows are gathered. The manual loop, src.predict,
  src.evaluate and the export check run it.
- trainer=hf: transformers' Trainer's own prediction loop (its device, precision and DDP),
  src.trainers.hf.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from src.data.encoded import Encoded

# examples -> one row of logits per example, in the examples' order
Backend = Callable[[Any], np.ndarray]


def documents(examples: Encoded, backend: Backend, pooling: str = "logits") -> np.ndarray:
    """One row of logits per document: the backend's rows for `examples`, each document's
    windows pooled (`pool`)."""
    return pool(backend(examples), docs(examples), pooling)


def truth(examples: Encoded) -> np.ndarray:
    """One target per document (its windows all carry it): an id, a multi-hot row, a value."""
    return doc_labels(examples.targets(), docs(examples))


def docs(examples: Encoded) -> list[int]:
    """Each example's document (several for a text cut into windows)."""
    return np.asarray(examples.doc).tolist()


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


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits, row by row (shifted by the row's max: no overflow)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def doc_labels(labels: np.ndarray, docs: Sequence[int]) -> np.ndarray:
    """One label per document (its windows all carry it): an id, a multi-hot row, a value."""
    labels = np.asarray(labels)
    out = np.zeros((max(docs) + 1, *labels.shape[1:]), dtype=labels.dtype)
    out[np.asarray(docs)] = labels
    return out


def lengths_of(examples: Encoded) -> np.ndarray:
    """Every example's word pieces."""
    return np.asarray(examples.lengths)
