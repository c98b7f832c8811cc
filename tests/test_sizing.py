"""How long a run trains (`trainer.min_steps`, `trainer.max_epochs`, early stopping): a small
dataset gets the epochs it needs, movie_reviews keeps its two, a large one is not made longer;
and on a many-class, few-example dataset made here the sized default learns what two epochs do
not."""

from __future__ import annotations

import csv
import json
import random

import pytest

from tests.conftest import trainer_config

CLASSES = [f"topic{i}" for i in range(15)]
FILLER = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "it",
    "that",
    "was",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "this",
]


@pytest.mark.parametrize(
    ("n_train", "epochs"),
    [(1440, 2), (360, 7), (100_000, 2), (40, 20), (10, 20)],
)  # movie_reviews' 1440 training reviews; 400 documents less validation; 100k rows; tiny
def test_min_steps_raises_epochs_up_to_max_epochs(n_train, epochs):
    config = trainer_config(epochs=2, batch_size=16, min_steps=150, max_epochs=20)
    assert config.sized(n_train).epochs == epochs
    assert trainer_config(epochs=2, min_steps=0).sized(n_train).epochs == 2


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory):
    """15 classes of 10 short documents each, a class's keyword among filler words: train and
    test files of the same making."""
    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("classes")

    def write(name: str, per_class: int):
        rows = []
        for label in CLASSES:
            for _ in range(per_class):
                words = rng.choices(FILLER, k=6)
                for _ in range(2):
                    words.insert(rng.randrange(len(words)), label.replace("topic", "word"))
                rows.append((" ".join(words), label))
        rng.shuffle(rows)
        with (folder / name).open("w", newline="") as f:
            csv.writer(f).writerows([("text", "label"), *rows])
        return folder / name

    return write("train.csv", 10), write("test.csv", 4)


def sized_run(trained, files, *extra):
    train, test = files
    return trained(
        "backbone=tiny",
        "device=cpu",
        "trainer.precision=fp32",
        "dataset=files",
        f"dataset.train_file={train}",
        f"dataset.test_file={test}",
        "max_length=32",
        "lr=3e-3",
        *extra,
    )


def test_the_default_sizing_learns_many_classes_that_two_epochs_do_not(trained, many_classes):
    """Everything else default: 135 training documents are 9 steps per epoch; min_steps makes
    the 2 epochs 17, early stopping ends them once validation stops improving (after 9 here:
    test accuracy 1.0, against 0.38 after the 2 epochs alone)."""
    sized = json.loads((sized_run(trained, many_classes) / "metrics.json").read_text())
    fixed = json.loads(
        (sized_run(trained, many_classes, "trainer.min_steps=0") / "metrics.json").read_text()
    )
    assert len(fixed["history"]) == 2
    assert 2 < len(sized["history"]) <= 17
    assert sized["history"][-1]["train_loss"] < fixed["history"][-1]["train_loss"]
    assert sized["test"]["accuracy"] > fixed["test"]["accuracy"] + 0.3
