"""Class imbalance: `class_weights=null|balanced|[w0, w1, ...]` weights the training loss of
both heads under both trainers; the data log counts each split's labels and warns about a rare
class."""

from __future__ import annotations

import csv
import logging
import random
from pathlib import Path

import numpy as np
import pytest

from src.config.errors import UserError
from src.run import train
from src.tasks import SingleLabel
from tests.conftest import first_error

class_weights = SingleLabel().weights  # what class_weights means for the single-label task

WORDS = {
    "a": ["sunny", "bright", "warm", "beach", "summer"],
    "b": ["rain", "storm", "cloud", "wet", "umbrella"],
}
FILLER = ["the", "day", "was", "quite", "very", "and", "with", "some", "today"]


def _nine_to_one(path: Path, n_rows: int = 400) -> Path:
    """A CSV where one row in ten is `b`; a row's label shows in two of its seven words."""
    rng = random.Random(0)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(n_rows):
            label = "b" if i % 10 == 0 else "a"
            words = rng.sample(WORDS[label], 2) + rng.sample(FILLER, 5)
            rng.shuffle(words)
            writer.writerow([" ".join(words), label])
    return path


def _minority_recall(run_dir: Path) -> float:
    rows = list(csv.DictReader((run_dir / "test_predictions.csv").open(encoding="utf-8")))
    minority = [r for r in rows if r["label"] == "b"]
    return sum(r["prediction"] == "b" for r in minority) / len(minority)


@pytest.mark.parametrize("trainer", ["manual", "hf"])
def test_balanced_raises_the_minority_recall(compose_cfg, tmp_path, trainer, caplog):
    """On 9:1 data an unweighted loss learns to answer the majority class (recall of `b`: 0);
    `balanced` makes a `b` cost nine times an `a`. custom_head: the tiny random backbone's
    hf_head barely learns in two epochs (its scaling is checked below, for both heads)."""
    data_file = _nine_to_one(tmp_path / "imbalanced.csv")
    base = [
        "debug=smoke",
        "dataset=files",
        f"dataset.train_file={data_file}",
        "dataset.max_train_samples=null",
        "dataset.max_eval_samples=null",
        "epochs=2",
        f"trainer={trainer}",
        "model=custom_head",
    ]
    with caplog.at_level(logging.INFO):
        train(compose_cfg(*base, "class_weights=null"), tmp_path / "null")
    assert "labels in train: a 259, b 29" in caplog.text
    assert "labels in validation: a 29, b 3" in caplog.text
    assert "labels in test: a 72, b 8" in caplog.text
    train(compose_cfg(*base, "class_weights=balanced"), tmp_path / "balanced")

    assert _minority_recall(tmp_path / "balanced") > _minority_recall(tmp_path / "null")
    card = (tmp_path / "balanced" / "best_model" / "README.md").read_text()
    assert "| class_weights | balanced |" in card


@pytest.mark.parametrize("trainer", ["manual", "hf"])
@pytest.mark.parametrize("model", ["custom_head", "hf_head"])
def test_weights_scale_the_loss_of_both_heads_under_both_trainers(compose_cfg, trainer, model):
    """Weights [3, 3] triple every example's loss: the loss each built trainer trains on
    (`BaseTrainer.loss`: the manual loop calls it, the HF Trainer's compute_loss is handed it; the
    test above shows the weights change what HF trains), on one batch of the run as built (the
    same seed: the same weights; eval mode: no dropout), is three times the unweighted one."""
    import torch

    from src.trainers.build import build
    from src.trainers.loggers import NullLogger

    base = ["debug=smoke", f"trainer={trainer}", f"model={model}", "dataset.max_train_samples=8"]
    losses = {}
    for name, weights in (("null", "null"), ("tripled", "[3,3]")):
        built = build(compose_cfg(*base, f"class_weights={weights}"), NullLogger())
        batch = built.collator(built.encoded["train"])
        with torch.no_grad():
            output = built.model.eval()(**batch)
        losses[name] = built.trainer.loss(output, batch["labels"]).item()
        assert (built.trainer.loss_fn is None) == (weights == "null")
    assert losses["tripled"] == pytest.approx(3 * losses["null"], rel=1e-5)


def test_a_class_under_a_tenth_of_train_is_warned_about(caplog):
    from src.data import Corpus, Split, log_label_counts

    def corpus(n_b: int) -> Corpus:
        train = Split(["t"] * 100, [0] * (100 - n_b) + [1] * n_b)
        return Corpus(train, Split(["t"], [0]), Split(["t", "u"], [0, 1]), ["a", "b"], "test")

    with caplog.at_level(logging.INFO):
        log_label_counts(corpus(10))
    assert "labels in train: a 90, b 10" in caplog.text and "under 10%" not in caplog.text
    with caplog.at_level(logging.INFO):
        log_label_counts(corpus(9))
    assert "class b is under 10% of the training data; class_weights=balanced" in caplog.text


def test_balanced_is_scikit_learns_formula():
    from sklearn.utils.class_weight import compute_class_weight

    labels = [0] * 90 + [1] * 8 + [2] * 2
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    np.testing.assert_allclose(class_weights("balanced", labels, ["x", "y", "z"]), expected)
    assert np.mean([class_weights("balanced", labels, ["x", "y", "z"])[y] for y in labels]) == (
        pytest.approx(1.0)
    )  # the loss keeps its scale
    assert class_weights(None, labels, ["x", "y", "z"]) is None
    assert class_weights([1, 2, 3], labels, ["x", "y", "z"]) == [1.0, 2.0, 3.0]


def test_a_weight_per_label_or_one_clear_line():
    with pytest.raises(UserError, match=r"class_weights=\[1, 2\]: 2 weights for 3 labels"):
        class_weights([1, 2], [0, 1, 2], ["x", "y", "z"])


@pytest.mark.parametrize("value", ["[0,1]", "inverse", "[]"])
def test_bad_class_weights_is_one_line(value):
    line = first_error("debug=smoke", f"class_weights={value}")
    assert line.startswith("error: class_weights=") and "balanced, or a list of positive" in line
