"""Tasks (`task=single_label|multi_label|regression`): each one end to end under both heads and
both trainers on small data written here, its metrics against scikit-learn and scipy, and
what follows from it (the best epoch's direction, predictions in the label's units, pipeline(),
src.evaluate, src.compare, validation)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from src.outputs.trained import Predictor
from src.tasks import MultiLabel, Regression, SingleLabel, metrics
from tests.conftest import first_error

FILES = ["debug=overfit", "dataset=files", "dataset.val_size=0", "epochs=60", "lr=1e-3"]
COMBOS = [
    ("custom_head", "manual"),
    ("hf_head", "hf"),
    ("hf_head", "manual"),
    ("custom_head", "hf"),
]
TAGS = [
    ("the apple", ["fruit"]),
    ("a river", ["water"]),
    ("the apple by a river", ["fruit", "water"]),
    ("a red car", []),
] * 2
SCORES = [
    ("the apple", 1.0),
    ("a river", 3.0),
    ("the apple by a river", 4.0),
    ("a red car", 0.0),
] * 2


@pytest.fixture(scope="module")
def tags(tmp_path_factory):
    """The same 8 tagged texts as JSONL (a list per row) and as CSV (`a|b`; empty: no tag)."""
    folder = tmp_path_factory.mktemp("tags")
    jsonl, table = folder / "tags.jsonl", folder / "tags.csv"
    jsonl.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in TAGS))
    with table.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *((t, "|".join(y)) for t, y in TAGS)])
    return jsonl, table


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    path = tmp_path_factory.mktemp("scores") / "scores.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "score"), *SCORES])
    return path


def multi_label_run(trained, tags, model, trainer, *extra):
    jsonl, table = tags
    return trained(
        *FILES,
        "task=multi_label",
        f"dataset.train_file={jsonl}",
        f"dataset.test_file={table}",
        f"model={model}",
        f"trainer={trainer}",
        *extra,
    )


def regression_run(trained, scores, model, trainer):
    return trained(
        *FILES,
        "task=regression",
        f"dataset.train_file={scores}",
        f"dataset.test_file={scores}",
        "dataset.label_column=score",
        "epochs=40",
        f"model={model}",
        f"trainer={trainer}",
    )


def read(run, name="metrics.json"):
    return json.loads((run / name).read_text())


# --- multi-label ------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "trainer"), COMBOS)
def test_multi_label_sets_are_learnt(trained, tags, model, trainer):
    """The 8 texts by heart (tested on the CSV form of the JSONL they trained on): every label
    set right, the empty one included; the task's six test keys, each with an interval."""
    run = multi_label_run(trained, tags, model, trainer)
    record = read(run)
    assert list(record["test"]) == list(metrics.TASK_METRICS["multi_label"])
    assert record["test"]["subset_accuracy"] == 1.0 and record["test"]["hamming_loss"] == 0.0
    assert all(low <= record["test"][m] <= high for m, (low, high) in record["test_ci95"].items())
    rows = list(csv.DictReader((run / "test_predictions.csv").open()))
    assert [json.loads(r["prediction"]) for r in rows] == [y for _, y in TAGS]
    assert list(rows[0]) == ["index", "label", "prediction", "p_fruit", "p_water"]
    assert record["task"] == {"name": "multi_label", "threshold": 0.5, "threshold_tuned": False}
    assert (run / "per_label.png").is_file() and "per_label.png" in (run / "report.md").read_text()


def test_a_known_threshold_gives_known_label_sets():
    probs = np.array([[0.9, 0.2, 0.45], [0.35, 0.6, 0.05]])
    logits = np.log(probs / (1 - probs))
    names = ["a", "b", "c"]
    assert MultiLabel().decide(logits).tolist() == [[True, False, False], [False, True, False]]
    low = MultiLabel(threshold=0.3)
    assert low.decide(logits).tolist() == [[True, False, True], [True, True, False]]
    assert low.prediction_cells(low.outputs(logits)[0], names)["prediction"] == ["a", "c"]
    assert (
        MultiLabel(threshold=0.95).prediction_cells(low.outputs(logits)[1], names)["prediction"]
        == []
    )


def test_tune_threshold_picks_the_best_micro_f1_on_validation():
    """Probabilities where only thresholds in (0.2, 0.3] get every label right: 0.25 wins."""
    probs = np.array([[0.31, 0.21], [0.29, 0.1], [0.9, 0.25]])
    truth = np.array([[True, False], [True, False], [True, True]])
    task = MultiLabel(tune_threshold=True)
    task.tune(np.log(probs / (1 - probs)), truth, 2)
    assert task.threshold == 0.25 and task.state()["threshold_tuned"] is True
    assert (task.decide(np.log(probs / (1 - probs))) == truth).all()


def test_tuned_threshold_is_recorded_and_predict_uses_it(trained, tags, tmp_path):
    """tune_threshold on a validation split: metrics.json and best_model/ record the choice,
    and src.predict decides with it."""

    jsonl, _ = tags
    run = trained(
        *FILES[:2],
        "task=multi_label",
        "task.tune_threshold=true",
        "epochs=30",
        "lr=1e-3",
        f"dataset.train_file={jsonl}",
        "dataset.test_file=" + str(jsonl),
        "dataset.val_size=0.25",
        "batch_size=4",
    )
    task = read(run)["task"]
    assert task["threshold_tuned"] is True and task["threshold"] in [
        round(0.05 * i, 2) for i in range(1, 20)
    ]
    saved = read(run / "best_model", "preprocessing.json")["task"]
    assert saved == {"name": "multi_label", "threshold": task["threshold"]}
    assert Predictor.load(run).task.threshold == task["threshold"]


def test_class_weights_become_pos_weight():
    """balanced: negatives / positives of each label; the loss is BCE with that pos_weight."""
    import torch

    labels = [[0], [0, 1], [], [0]]
    task = MultiLabel()
    weights = task.weights("balanced", labels, ["a", "b"])
    assert weights == [1 / 3, 3.0]
    logits, targets = torch.randn(4, 2), torch.tensor(task.to_targets(labels, 2))
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weights))(logits, targets)
    assert torch.allclose(task.loss(weights)(logits, targets), expected)


def test_class_weights_balanced_weighs_a_label_absent_from_train_as_one(caplog):
    """A label the split sent wholly to test (balanced is multi_label's default) is weighted 1
    with a warning, not a crash."""
    assert MultiLabel().weights("balanced", [[0], [], []], ["a", "b"]) == [2.0, 1.0]
    assert "no training example of ['b']; weight 1" in caplog.text


# Sparse on purpose: 3 of 4 texts carry no label, each label is on 1 text in 12.
FILLER = [
    "a red car",
    "the blue sky",
    "some old shoes",
    "a quiet room",
    "the long road",
    "green grass",
    "a tall tree",
    "the cold night",
]
SPARSE = [
    (f"the apple {FILLER[i % 8]}", ["fruit"])
    if i % 12 == 0
    else (f"a river {FILLER[i % 8]}", ["water"])
    if i % 12 == 1
    else (f"a bright lamp {FILLER[i % 8]}", ["light"])
    if i % 12 == 2
    else (f"{FILLER[i % 8]} {FILLER[i // 8 % 8]}", [])
    for i in range(48)
]


def test_the_multi_label_default_learns_sparse_labels_where_the_old_one_predicts_nothing(
    trained, compose_cfg, tmp_path_factory
):
    """task=multi_label's own defaults (10 epochs, class_weights=balanced) learn the three rare
    labels; the defaults it had (2 epochs, unweighted) learn "no label" and say so."""
    assert (
        compose_cfg("task=multi_label").epochs,
        compose_cfg("task=multi_label").class_weights,
    ) == (10, "balanced")
    assert (compose_cfg().epochs, compose_cfg().class_weights) == (2, None)
    path = tmp_path_factory.mktemp("sparse") / "sparse.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in SPARSE))
    # debug=overfit's 20 epochs give way to the task's (epochs=${task.epochs})
    common = [
        "debug=overfit",
        "dataset=files",
        "dataset.val_size=0",
        "task=multi_label",
        "dataset.max_train_samples=null",
        "dataset.max_eval_samples=null",
        "lr=1e-3",
        f"dataset.train_file={path}",
        f"dataset.test_file={path}",
        "epochs=${task.epochs}",
    ]
    new = read(trained(*common))
    old = read(trained(*common, "task.epochs=2", "task.class_weights=null"))
    assert len(new["history"]) == 10 and len(old["history"]) == 2
    assert new["test"]["f1_micro"] > 0.5 and new["warnings"] == []
    assert old["test"]["f1_micro"] == 0.0
    assert old["warnings"][-1].startswith("test: the model predicts no label for every text")


def test_multi_label_reads_csv_jsonl_and_sequence_classlabel(tags, tmp_path):
    import datasets

    from src.data import Files, HFDataset

    jsonl, table = tags
    got = [
        Files(train_file=str(p), val_size=0, test_size=0.25).load(MultiLabel())
        for p in (jsonl, table)
    ]
    assert got[0].label_names == got[1].label_names == ["fruit", "water"]
    assert got[0].train.labels == got[1].train.labels
    assert sorted(map(tuple, got[0].train.labels + got[0].test.labels)) == sorted(
        tuple(["fruit", "water"].index(n) for n in y) for _, y in TAGS
    )
    tag = datasets.ClassLabel(names=["water", "fruit"])
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.Sequence(tag)}
    )
    rows = {
        "text": [t for t, _ in TAGS],
        "label": [[["water", "fruit"].index(n) for n in y] for _, y in TAGS],
    }
    datasets.DatasetDict(train=datasets.Dataset.from_dict(rows, features=features)).save_to_disk(
        tmp_path / "ds"
    )
    corpus = HFDataset(path=str(tmp_path / "ds"), test_split=None, val_size=0, test_size=0.25).load(
        MultiLabel()
    )
    assert corpus.label_names == ["water", "fruit"]  # the ClassLabel's order
    assert sorted(map(tuple, corpus.train.labels + corpus.test.labels)) == sorted(
        tuple(sorted(["water", "fruit"].index(n) for n in y)) for _, y in TAGS
    )


def test_list_labels_under_single_label_point_to_multi_label(tags):
    """A JSONL file whose labels are lists, trained as single_label: one line naming the row
    and task=multi_label (it used to train on classes such as "['fruit', 'water']")."""
    from src.config.errors import UserError
    from src.data import Files

    jsonl, _ = tags
    with pytest.raises(
        UserError,
        match=rf'^{jsonl} row 1: label \["fruit"\] in column \'label\' '
        r"is a list; task=single_label takes one label a text: several labels a "
        r"text is task=multi_label$",
    ):
        Files(train_file=str(jsonl), val_size=0).load(SingleLabel())
    with pytest.raises(UserError, match="is a list; task=regression takes one label a text"):
        Files(train_file=str(jsonl), val_size=0).load(Regression())


# --- regression -------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "trainer"), COMBOS)
def test_regression_metrics_match_scipy_and_sklearn(trained, scores, model, trainer):
    """A number per text is learnt; the test metrics are scipy's and scikit-learn's on the saved
    predictions, which are in the label's units; the best epoch has the lowest mse."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    run = regression_run(trained, scores, model, trainer)
    record = read(run)
    rows = list(csv.DictReader((run / "test_predictions.csv").open()))
    truth = np.array([float(r["label"]) for r in rows])
    preds = np.array([float(r["prediction"]) for r in rows])
    assert truth.tolist() == [y for _, y in SCORES]
    expected = {
        "mse": mean_squared_error(truth, preds),
        "mae": mean_absolute_error(truth, preds),
        "pearson": pearsonr(truth, preds)[0],
        "spearman": spearmanr(truth, preds)[0],
    }
    assert list(record["test"]) == list(expected)
    for name, value in expected.items():
        assert record["test"][name] == pytest.approx(value, abs=1e-4), name
    assert record["test"]["pearson"] > 0.95
    history = [h["mse"] for h in record["history"]]
    assert record["best_epoch"] == 1 + int(np.argmin(history))
    assert record["best_eval_mse"] == pytest.approx(min(history))
    assert (run / "scatter.png").is_file()


def test_regression_predictions_come_back_in_the_labels_units(trained, scores, capsys, tmp_path):
    """The saved model's last layer carries the targets' scale: src.predict and pipeline()
    give the run's own test predictions, in the label's units."""
    from transformers import pipeline

    from src import predict

    run = regression_run(trained, scores, "hf_head", "hf")
    saved = [float(r["prediction"]) for r in csv.DictReader((run / "test_predictions.csv").open())]
    got = Predictor.load(run).probabilities([t for t, _ in SCORES])
    np.testing.assert_allclose(got, saved, rtol=1e-4, atol=1e-4)
    regress = pipeline("text-classification", model=str(run / "best_model"), device="cpu")
    answers = regress([t for t, _ in SCORES], function_to_apply="none")
    np.testing.assert_allclose([a["score"] for a in answers], saved, rtol=1e-4, atol=1e-4)
    capsys.readouterr()  # what training this run printed, when this test trained it
    predict.main([f"run_dir={run}", "text=a river"])
    assert capsys.readouterr().out.strip() == f"score: {saved[1]:.6g}"
    texts = tmp_path / "texts.txt"  # a file: its output columns and cells (it crashed)
    texts.write_text("".join(f"{t}\n" for t, _ in SCORES), encoding="utf-8")
    predict.main([f"run_dir={run}", f"input={texts}"])
    rows = list(csv.DictReader((tmp_path / "texts.txt.predictions.csv").open(encoding="utf-8")))
    assert [list(r) for r in rows[:1]] == [["text", "prediction"]]
    assert [float(r["prediction"]) for r in rows] == pytest.approx(saved, rel=1e-4, abs=1e-4)
    card = (run / "best_model" / "README.md").read_text()
    assert 'function_to_apply="none"' in card and "Regression: one output, `score`" in card


def test_regression_metrics_on_random_data_and_their_intervals():
    from scipy.stats import pearsonr, spearmanr

    rng = np.random.default_rng(0)
    truth = rng.normal(size=200)
    preds = truth + rng.normal(scale=0.5, size=200)
    preds[:20] = np.round(preds[:20])  # ties for spearman
    got = metrics.compute(truth, preds, 1, "regression")
    assert got["pearson"] == pytest.approx(pearsonr(truth, preds)[0])
    assert got["spearman"] == pytest.approx(spearmanr(truth, preds)[0])
    ci = metrics.bootstrap_ci(truth, preds, 1, task="regression")
    assert all(ci[m][0] <= got[m] <= ci[m][1] for m in got)
    assert metrics.compute(truth, np.zeros(200), 1, "regression")["pearson"] == 0.0  # constant


def test_multi_label_metrics_match_sklearn():
    from sklearn.metrics import f1_score, hamming_loss, precision_score, recall_score

    rng = np.random.default_rng(1)
    for _ in range(50):
        truth, preds = rng.random((30, 4)) < 0.3, rng.random((30, 4)) < 0.3
        got = metrics.compute(truth, preds, 4, "multi_label")
        expected = {
            "f1_micro": f1_score(truth, preds, average="micro", zero_division=0),
            "f1_macro": f1_score(truth, preds, average="macro", zero_division=0),
            "precision_micro": precision_score(truth, preds, average="micro", zero_division=0),
            "recall_micro": recall_score(truth, preds, average="micro", zero_division=0),
            "subset_accuracy": float((truth == preds).all(1).mean()),
            "hamming_loss": hamming_loss(truth, preds),
        }
        assert got == pytest.approx(expected)


# --- downstream: evaluate, compare, validation --------------------------------------------------


def test_evaluate_and_compare_follow_the_task(trained, tags, scores, tmp_path):
    """src.evaluate on a run's own test file reproduces its metrics; src.compare pairs two
    multi-label runs (McNemar on subset accuracy) and two regression runs (no McNemar)."""
    from src import compare
    from src.config.compose import compose
    from src.evaluate import evaluate

    runs = (
        (multi_label_run(trained, tags, "custom_head", "manual"), "multi_label"),
        (regression_run(trained, scores, "hf_head", "hf"), "regression"),
    )
    for run, task in runs:
        cfg = compose(
            [
                f"run_dir={run}",
                "dataset=files",
                f"dataset.test_file={tags[1] if task == 'multi_label' else scores}",
                *(["dataset.label_column=score"] if task == "regression" else []),
            ],
            config_name="evaluate",
        )
        record = evaluate(cfg, tmp_path / task)
        for name, value in read(run)["test"].items():
            assert record["test"][name] == pytest.approx(value, abs=1e-4), (task, name)
        assert record["task"]["name"] == task
    pair = [multi_label_run(trained, tags, m, t) for m, t in COMBOS[:2]]
    text = compare.markdown([compare.Run.read(p) for p in pair], ["a", "b"])
    assert "subset_accuracy" in text and "McNemar p" in text
    pair = [regression_run(trained, scores, m, t) for m, t in COMBOS[:2]]
    text = compare.markdown([compare.Run.read(p) for p in pair], ["a", "b"])
    assert "- mse " in text and "McNemar" not in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["task=regression", "trainer.metric_for_best_model=f1"],
            "error: trainer.metric_for_best_model=f1: not a metric of task=regression; use one of "
            "mse, mae, pearson, spearman",
        ),
        (
            ["task=multi_label"],
            "error: task=multi_label: dataset src.data.MovieReviews has one label per text; use "
            "task=single_label, or dataset=files / dataset=hf with your labels",
        ),
        (
            [
                "task=regression",
                "class_weights=balanced",
                "dataset=files",
                "dataset.train_file=x.csv",
            ],
            "error: class_weights=balanced: no classes in task=regression; set class_weights=null",
        ),
        (
            ["task=single_label", "trainer.metric_for_best_model=mse"],
            "error: trainer.metric_for_best_model=mse: not a metric of task=single_label; use one "
            "of accuracy, precision, recall, f1",
        ),
    ],
)
def test_a_config_the_task_cannot_take_is_one_line(args, expected):
    assert first_error(*args) == expected


def test_the_metric_follows_the_task_and_optuna_its_direction(compose_cfg):
    from omegaconf import OmegaConf

    from src.config.compose import compose

    assert compose_cfg("task=regression").trainer.metric_for_best_model == "mse"
    assert compose_cfg("task=multi_label").trainer.metric_for_best_model == "f1_micro"
    assert compose_cfg().trainer.metric_for_best_model == "f1"
    for task, direction in (("regression", "minimize"), ("single_label", "maximize")):
        cfg = compose(["hparams_search=optuna", f"task={task}"], hydra=True)
        assert OmegaConf.select(cfg, "hydra.sweeper.direction") == direction


def test_single_label_is_unchanged_by_default():
    """No task key given: the notebook's task, its metrics and its predictions."""
    assert SingleLabel().metrics == ("accuracy", "precision", "recall", "f1")
    assert Regression().metrics == ("mse", "mae", "pearson", "spearman")
    assert metrics.higher_is_better("mse") is False and metrics.higher_is_better("f1") is True


def test_the_sweep_summary_follows_the_task(trained, tags, scores):
    """A sweep's table shows each task's headline metrics beside its best eval value, sorted
    the metric's way (lower first for mse)."""
    from src.outputs.trained import Job, flat_metrics
    from src.sweeps import summary

    regression = read(regression_run(trained, scores, "custom_head", "manual"))
    assert set(flat_metrics(regression)) == {"best_eval_mse", "test_mse", "test_pearson"}
    multi = read(multi_label_run(trained, tags, "custom_head", "manual"))
    assert set(flat_metrics(multi)) == {
        "best_eval_f1_micro",
        "test_f1_micro",
        "test_subset_accuracy",
    }
    jobs = [
        Job(name, {}, "finished", {"best_eval_mse": v})
        for name, v in (("worse", 2.0), ("better", 1.0))
    ]
    assert [j.name for j in summary.sort_jobs(jobs, "best_eval_mse")] == ["better", "worse"]
    assert "lower is better" in summary.to_markdown(jobs, "best_eval_mse", "sweep")


def test_int8_of_a_regression_run_is_judged_in_the_labels_units(trained, scores, tmp_path):
    """A value "disagrees" past 1% of the test labels' spread, not of the predictions': a
    model that learnt nearly one value (lr=1e-9) has almost no spread, and its int8 export was
    refused for differences of 1e-4 in the label's units."""
    from src import export

    run = trained(
        *FILES,
        "task=regression",
        f"dataset.train_file={scores}",
        f"dataset.test_file={scores}",
        "dataset.label_column=score",
        "epochs=1",
        "lr=1e-9",
        "model=hf_head",
        "trainer=manual",
    )
    assert export.main([f"run_dir={run}", f"out={tmp_path / 'int8'}", "quantize=int8"]) == 0
    check = json.loads((tmp_path / "int8" / "export.json").read_text())["check"]
    labels = np.array([y for _, y in SCORES])
    predicted = Predictor.load(run).probabilities([t for t, _ in SCORES])
    assert check["disagree"] == 0 and check["largest_difference"] < 0.01 * labels.std()
    assert check["largest_difference"] > 0.01 * predicted.std()  # the old rule's refusal


def test_every_task_exports_and_its_export_predicts_as_the_run(trained, tags, scores, tmp_path):
    """multi_label (its threshold) and regression (its units) through `src.export` to ONNX:
    src.predict gives the run's own predictions from the export folder."""
    from src import export

    texts = [t for t, _ in SCORES[:4]]
    for run in (
        multi_label_run(trained, tags, "custom_head", "manual"),
        regression_run(trained, scores, "hf_head", "hf"),
    ):
        out = tmp_path / run.name
        assert export.main([f"run_dir={run}", f"out={out}"]) == 0
        ours, theirs = (Predictor.load(f) for f in (run, out))
        assert theirs.task.state() == ours.task.state()
        np.testing.assert_allclose(
            theirs.probabilities(texts), ours.probabilities(texts), atol=1e-4
        )
        if ours.task.NAME == "multi_label":  # the same label sets at the run's threshold
            assert (
                theirs.task.decide(theirs.logits(texts)) == ours.task.decide(ours.logits(texts))
            ).all()
