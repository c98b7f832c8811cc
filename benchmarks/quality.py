"""Accuracy on the notebook's split: fine-tuning runs of the project, and the classical model
they have to beat (TF-IDF over word 1-2 grams + a linear SVM, trained in seconds).

The baseline uses sublinear term frequency and drops n-grams seen in a single review: the usual
settings for reviews (the defaults score 0.84 on this split, these 0.8725).

Each function runs in a fresh process (benchmarks/worker.py) and returns plain numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import compose
from src import data, metrics, outputs

QUICKSTART = "experiment=cpu_quickstart"


def tfidf_svm() -> dict[str, Any]:
    """TF-IDF over word 1-2 grams + LinearSVC, trained on the 1600 training reviews."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    corpus = data.MovieReviews().load()
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    classifier = LinearSVC().fit(vectorizer.fit_transform(corpus.train.texts), corpus.train.labels)
    preds = classifier.predict(vectorizer.transform(corpus.test.texts))
    seconds = time.perf_counter() - start
    scores = metrics.compute(np.asarray(corpus.test.labels), preds, len(corpus.label_names))
    return {**scores, "wall_s": seconds, "n_train": len(corpus.train), "n_test": len(corpus.test)}


def finetune(
    truncation: str,
    model: str,
    out_dir: str,
    cap: int | None = None,
    backbone: str = "minilm",
    device: str = "cpu",
    backbone_path: str | None = None,
) -> dict[str, Any]:
    """`python -m src.run experiment=cpu_quickstart truncation=.. model=..` end to end; `cap`
    limits train and test reviews (to check the harness, not to report)."""
    from src.run import train

    overrides = [QUICKSTART, f"truncation={truncation}", f"model={model}", f"backbone={backbone}"]
    overrides.append(f"device={device}")
    if backbone_path:
        overrides.append(f"backbone.path={backbone_path}")
    if cap:
        overrides += [f"dataset.max_train_samples={cap}", f"dataset.max_eval_samples={cap}"]
    cfg = compose(overrides)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train(cfg, Path(out_dir))
    seconds = time.perf_counter() - start
    summary = json.loads((Path(out_dir) / outputs.METRICS_FILE).read_text())
    return {
        **summary["test"],
        "wall_s": seconds,
        "train_s": summary["train_seconds"],
        "device": summary["device"],
        "precision": summary["precision"],
        "n_train": summary["n_train"],
        "n_test": summary["n_test"],
        "overrides": overrides,
        "settings": {k: cfg[k] for k in ("epochs", "max_length", "batch_size", "lr")},
    }
