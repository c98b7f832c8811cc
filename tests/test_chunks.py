"""truncation=chunks: every word piece in overlapping windows, one prediction per document."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from src import data
from src.tasks import inference
from src.tasks.inference import pool


def test_windows_cover_every_piece_with_the_stride_as_overlap():
    ids = list(range(300))
    cuts = data.windows(ids, budget=100, stride=20)
    assert [(c[0], c[-1]) for c in cuts] == [(0, 99), (80, 179), (160, 259), (240, 299)]
    assert set().union(*map(set, cuts)) == set(ids)
    assert data.windows(list(range(50)), budget=100, stride=20) == [list(range(50))]


def test_a_document_in_three_windows_gets_one_pooled_prediction():
    window_logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 3.0]])
    docs = [0, 0, 0, 1]  # document 0 was cut into three windows
    pooled = pool(window_logits, docs, "logits")
    assert pooled.shape == (2, 2)
    np.testing.assert_allclose(pooled[0], window_logits[:3].mean(0))
    np.testing.assert_allclose(pooled[1], window_logits[3])
    probs = np.exp(window_logits) / np.exp(window_logits).sum(-1, keepdims=True)
    by_probs = pool(window_logits, docs, "probs")
    np.testing.assert_allclose(np.exp(by_probs[0]), probs[:3].mean(0))  # softmax -> mean prob


@pytest.mark.parametrize("trainer", ["manual", "hf"])
@pytest.mark.parametrize("model", ["custom_head", "hf_head"])
def test_chunks_end_to_end_count_documents(compose_cfg, tmp_path, monkeypatch, model, trainer):
    """Training sees windows (each with its review's label); evaluation, the test metrics,
    test_predictions.csv and src.predict count reviews, each pooled once by src.tasks.inference."""
    from src.outputs.trained import Predictor
    from src.run import train

    pooled = []  # (documents, windows) of every pooling: the one inference path's
    real_pool = inference.pool
    monkeypatch.setattr(
        inference,
        "pool",
        lambda logits, docs, how: (
            pooled.append((max(docs) + 1, len(docs))) or real_pool(logits, docs, how)
        ),
    )
    cut = ("truncation=chunks", "max_length=64", "stride=16")
    few = ("dataset.max_train_samples=12", "dataset.max_eval_samples=8")
    cfg = compose_cfg("debug=smoke", f"model={model}", f"trainer={trainer}", *cut, *few)
    train(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # each epoch's evaluation pools the eval split once, then the test split is pooled once
    epochs, n_eval = len(metrics["history"]), metrics["n_eval"]
    assert [docs for docs, _ in pooled] == [n_eval] * epochs + [metrics["n_test"]]
    assert all(windows > docs for docs, windows in pooled)
    rows = list(csv.DictReader((tmp_path / "test_predictions.csv").open()))
    assert len(rows) == metrics["n_test"] == 8  # documents, not windows
    right = sum(r["label"] == r["prediction"] for r in rows)
    assert metrics["test"]["accuracy"] == pytest.approx(right / len(rows))
    corpus = data.MovieReviews(max_train_samples=12, max_eval_samples=8).load()
    tokenizer = Predictor.load(tmp_path).tokenizer
    windows = data.encode(tokenizer, corpus.train, 64, "chunks", 16)
    assert len(windows) > 12 * 5  # reviews of ~850 pieces in windows of 62 advancing by 46
    assert all(w["labels"] == corpus.train.labels[w["doc"]] for w in windows)
    saved = np.array([[float(r["p_neg"]), float(r["p_pos"])] for r in rows[:4]])
    pooled.clear()
    predicted = Predictor.load(tmp_path).probabilities(corpus.test.texts[:4])
    np.testing.assert_allclose(predicted, saved, atol=1e-4)  # src.predict pools the same way
    assert pooled[0][0] == 4 and pooled[0][1] > 4 and len(pooled) == 1
