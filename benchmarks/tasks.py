"""Data files for the three tasks beyond one text and one label, from the NLTK corpora in
NLTK_DATA, and a TF-IDF baseline on exactly the splits a run makes of them.

    NLTK_DATA=../shared/nltk_data python -m benchmarks.tasks write     # outputs/data/*
    NLTK_DATA=../shared/nltk_data python -m benchmarks.tasks baseline  # TF-IDF on each task

- `rte_train.csv` / `rte_test.csv` (sentence pairs): RTE-1 and RTE-2's dev pairs to train on,
  their test pairs to test on; columns `text`, `hypothesis`, `label` (entailment | not).
- `product_tags.jsonl` (multi-label): product_reviews_2's sentences that mention one of its
  12 most frequent product features; `label` is the JSON list of those features.
- `product_scores.csv` (regression): every sentence tagged with a feature; `score` is the mean
  of its features' scores (-3 to +3).
- `product_topics.csv` (many classes, few examples): the sentences that mention exactly one of
  the 12 features; `label` is that feature.
- `product_aspects.jsonl` (sparse multi-label): every sentence of product_reviews_2, `label`
  the JSON list of the 20 most frequent features it mentions; most sentences mention none.

The corpora are read in place, never copied into the project; outputs/ is not committed.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections import Counter
from pathlib import Path

OUT = Path("outputs/data")
TOP_FEATURES = 12
SPARSE_FEATURES = 20  # product_aspects.jsonl: labels as most real multi-label data has them
SCORE = re.compile(r"[+-]?\d+")

# The commands a run of each task takes (README and the closing note quote them).
RUNS = {
    "pairs": [
        "dataset=files",
        f"dataset.train_file={OUT}/rte_train.csv",
        f"dataset.test_file={OUT}/rte_test.csv",
        "dataset.text_pair_column=hypothesis",
        "max_length=128",
    ],
    "multi_label": [
        "task=multi_label",
        "dataset=files",
        f"dataset.train_file={OUT}/product_tags.jsonl",
        "max_length=64",
    ],
    "regression": [
        "task=regression",
        "dataset=files",
        "dataset.label_column=score",
        f"dataset.train_file={OUT}/product_scores.csv",
        "max_length=64",
    ],
    "topics": ["dataset=files", f"dataset.train_file={OUT}/product_topics.csv", "max_length=64"],
    "sparse_multi_label": [
        "task=multi_label",
        "dataset=files",
        f"dataset.train_file={OUT}/product_aspects.jsonl",
        "max_length=64",
    ],
}


def write() -> None:
    from nltk.corpus import product_reviews_2, rte

    OUT.mkdir(parents=True, exist_ok=True)
    for part, files in (
        ("train", ["rte1_dev.xml", "rte2_dev.xml"]),
        ("test", ["rte1_test.xml", "rte2_test.xml"]),
    ):
        rows = [
            (p.text, p.hyp, "entailment" if p.value == 1 else "not")
            for f in files
            for p in rte.pairs(f)
        ]
        _csv(OUT / f"rte_{part}.csv", ["text", "hypothesis", "label"], rows)
    lines = [
        line
        for f in product_reviews_2.fileids()
        for review in product_reviews_2.reviews(f)
        for line in review.review_lines
        if line.features
    ]
    top = {
        f
        for f, _ in Counter(f for line in lines for f, _ in line.features).most_common(TOP_FEATURES)
    }
    topics = []
    with (OUT / "product_tags.jsonl").open("w", encoding="utf-8") as out:
        for line in lines:
            tags = sorted({f for f, _ in line.features} & top)
            if tags:
                out.write(json.dumps({"text": " ".join(line.sent), "label": tags}) + "\n")
            if len(tags) == 1 and len({f for f, _ in line.features}) == 1:
                topics.append((" ".join(line.sent), tags[0]))
    _csv(OUT / "product_topics.csv", ["text", "label"], topics)
    scored = []
    for line in lines:
        values = [int(m.group()) for _, s in line.features if (m := SCORE.search(s))]
        if values:
            scored.append((" ".join(line.sent), round(sum(values) / len(values), 4)))
    _csv(OUT / "product_scores.csv", ["text", "score"], scored)
    every = [
        line
        for f in product_reviews_2.fileids()
        for review in product_reviews_2.reviews(f)
        for line in review.review_lines
    ]
    common = Counter(f for line in every for f, _ in line.features).most_common(SPARSE_FEATURES)
    aspects = {f for f, _ in common}
    with (OUT / "product_aspects.jsonl").open("w", encoding="utf-8") as out:
        for line in every:
            tags = sorted({f for f, _ in line.features} & aspects)
            out.write(json.dumps({"text": " ".join(line.sent), "label": tags}) + "\n")
    print(
        f"wrote {OUT}/: rte_train.csv, rte_test.csv, product_tags.jsonl, product_scores.csv, "
        "product_topics.csv, product_aspects.jsonl"
    )


def _csv(path: Path, header: list[str], rows: list) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])


def baseline() -> None:
    """TF-IDF (word 1-2 grams) + a linear model, fit on each run's train split, scored on its
    test split with the framework's own metrics and intervals."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    from src.config.compose import compose
    from src.tasks import metrics
    from src.trainers.build import make

    for name, overrides in RUNS.items():
        cfg = compose(overrides)
        task = make(cfg.task)
        corpus = make(cfg.dataset).load(task)
        k = len(corpus.label_names)

        def texts(split):
            pairs = split.pairs or [""] * len(split)
            return [f"{a} ||| {b}" if b else a for a, b in zip(split.texts, pairs, strict=True)]

        vectors = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        x_train, x_test = vectors.fit_transform(texts(corpus.train)), None
        x_test = vectors.transform(texts(corpus.test))
        truth = task.truth(corpus.test.labels, k)
        if task.NAME == "regression":
            model = Ridge(alpha=1.0).fit(x_train, np.asarray(corpus.train.labels))
        elif task.NAME == "multi_label":
            hot = task.truth(corpus.train.labels, k)
            model = OneVsRestClassifier(LinearSVC()).fit(x_train, hot)
        else:
            model = LinearSVC().fit(x_train, corpus.train.labels)
        preds = model.predict(x_test)
        scores = metrics.compute(truth, preds, k, task.NAME)
        ci = metrics.bootstrap_ci(truth, preds, k, task=task.NAME)
        shown = ", ".join(
            f"{m} {v:.4f} [{ci[m][0]:.4f}, {ci[m][1]:.4f}]" for m, v in scores.items()
        )
        print(f"{name} ({len(corpus.train)} train, {len(corpus.test)} test): {shown}")


if __name__ == "__main__":
    {"write": write, "baseline": baseline}[sys.argv[1] if len(sys.argv) > 1 else "write"]()
