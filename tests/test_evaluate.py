"""`python -m src.evaluate`: a finished run scored on labelled data, without training."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from src.config.compose import compose
from src.config.errors import UserError
from src.evaluate import CONFIG_NAME, evaluate
from tests.conftest import run_cli

SMOKE_CAPS = ["dataset.max_eval_samples=32"]  # the test split the smoke runs were scored on


def _evaluation(*overrides: str):
    return compose(list(overrides), config_name=CONFIG_NAME)


@pytest.mark.parametrize("model", ["hf_head", "custom_head"])
def test_the_runs_own_test_split_gives_its_test_metrics(trained_runs, tmp_path, model):
    """Scored again on the split it was tested on, cut as in training: the same predictions,
    metrics and intervals as the run's own, and the texts' fingerprint pairs them up."""
    run = trained_runs[model]
    record = evaluate(_evaluation(f"run_dir={run}", *SMOKE_CAPS), tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert record == json.loads((tmp_path / "metrics.json").read_text())
    assert record["test"] == pytest.approx(metrics["test"])
    assert record["test_ci95"] == metrics["test_ci95"]  # the same predictions, the same draws
    assert record["test_sha256"] == metrics["test_sha256"] and record["n_test"] == 32
    ours, theirs = (
        list(csv.DictReader((p / "test_predictions.csv").open())) for p in (tmp_path, run)
    )
    assert [r["prediction"] for r in ours] == [r["prediction"] for r in theirs]
    probs = [[float(r[f"p_{n}"]) for n in ("neg", "pos")] for r in (*ours, *theirs)]
    np.testing.assert_allclose(probs[:32], probs[32:], atol=1e-5)
    text = (tmp_path / "report.md").read_text()
    assert "| accuracy |" in text and "confusion_matrix.png" in text
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 10_000


def _labelled_csv(path, labels: list[str]):
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        writer.writerows(
            [f"a {'fine' if y == 'pos' else 'dull'} film number {i}", y]
            for i, y in enumerate(labels)
        )
    return path


def test_a_test_file_alone_is_scored_whole(trained_runs, tmp_path):
    """dataset=files with only a test_file (no train_file needed): all its rows, labels mapped
    to the run's by name; the metrics are scikit-learn's on the written predictions."""
    from sklearn.metrics import accuracy_score, f1_score

    data = _labelled_csv(tmp_path / "new.csv", ["pos", "neg", "neg", "pos", "pos", "neg"] * 3)
    cfg = _evaluation(
        f"run_dir={trained_runs['custom_head']}",
        "dataset=files",
        f"dataset.test_file={data}",
        "dataset.text_column=review",
        "dataset.label_column=sentiment",
    )
    record = evaluate(cfg, tmp_path / "out")
    assert record["n_test"] == 18 and record["label_names"] == ["neg", "pos"]
    rows = list(csv.DictReader((tmp_path / "out" / "test_predictions.csv").open()))
    truth, said = [r["label"] for r in rows], [r["prediction"] for r in rows]
    assert truth == ["pos", "neg", "neg", "pos", "pos", "neg"] * 3
    assert record["test"]["accuracy"] == pytest.approx(accuracy_score(truth, said))
    assert record["test"]["f1"] == pytest.approx(f1_score(truth, said, pos_label="pos"))


def test_labels_the_run_never_saw_are_one_line(trained_runs, tmp_path):
    data = _labelled_csv(tmp_path / "new.csv", ["pos", "meh", "neg", "great"])
    cfg = _evaluation(
        f"run_dir={trained_runs['hf_head']}",
        "dataset=files",
        f"dataset.test_file={data}",
        "dataset.text_column=review",
        "dataset.label_column=sentiment",
    )
    with pytest.raises(UserError, match=r"new.csv: labels \['great', 'meh'\] were never seen"):
        evaluate(cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], "run_dir=null: required; give a finished run: run_dir=outputs/runs/<run>"),
        (["run_dir=x", "batch_size=0"], "batch_size=0: an integer >= 1"),
        (["run_dir=x", "+epochs=3"], "epochs=3: not a top-level key of src.evaluate"),
        (["run_dir=x", "+dataset.val_sise=0"], "dataset.val_sise=0: not a key of"),
    ],
)
def test_config_mistakes_are_one_line(overrides, message):
    from src.evaluate import validate

    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
        validate(_evaluation(*overrides))


def test_the_cli_scores_a_run_and_refuses_a_folder_that_is_no_run(trained_runs, tmp_path):
    out = tmp_path / "evaluation"
    proc = run_cli(
        f"run_dir={trained_runs['custom_head']}",
        *SMOKE_CAPS,
        f"hydra.run.dir={out}",
        module="src.evaluate",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().startswith("32 texts: accuracy=")
    assert json.loads((out / "metrics.json").read_text())["n_test"] == 32
    bad = run_cli(f"run_dir={tmp_path}", f"hydra.run.dir={tmp_path}/x", module="src.evaluate")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "not a folder any command of this project wrote" in bad.stderr
    assert not (tmp_path / "x").exists()  # refused before Hydra made the evaluation's folder
    run = shutil.copytree(trained_runs["custom_head"], tmp_path / "run")  # into a run's folder:
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}  # its results would go
    over = run_cli(f"run_dir={out}", f"hydra.run.dir={run}", module="src.evaluate")
    assert over.returncode == 2 and over.stderr.count("\n") == 1, over.stderr[-3000:]
    assert f"hydra.run.dir={run}: holds a training run, which python -m src.evaluate" in over.stderr
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before  # not a file touched


_OWN_DATA = (
    "debug=smoke",
    "dataset=files",
    "dataset.text_column=review",
    "dataset.label_column=sentiment",
)


def test_without_a_dataset_the_run_is_scored_on_its_own_data(trained, tmp_path):
    """`run_dir=R` alone, R trained on dataset=files: R's own test split (not movie_reviews),
    with `dataset.<key>=` applied on top; `dataset=<option>` picks another dataset."""
    from src.evaluate import prepare

    data = _labelled_csv(tmp_path / "own.csv", ["pos", "neg"] * 20)
    run = trained(*_OWN_DATA, f"dataset.train_file={data}")
    cfg, found = prepare(_evaluation(f"run_dir={run}"), [f"run_dir={run}"])
    assert cfg.dataset.train_file == str(data)
    record = evaluate(cfg, tmp_path / "e", found)
    metrics = json.loads((run / "metrics.json").read_text())
    assert record["test"] == pytest.approx(metrics["test"])
    assert record["test_sha256"] == metrics["test_sha256"]
    capped, _ = prepare(
        _evaluation(f"run_dir={run}", "dataset.max_eval_samples=3"),
        [f"run_dir={run}", "dataset.max_eval_samples=3"],
    )
    assert capped.dataset.train_file == str(data) and capped.dataset.max_eval_samples == 3
    other = [f"run_dir={run}", "dataset=movie_reviews"]
    assert prepare(_evaluation(*other), other)[0].dataset._target_.endswith("MovieReviews")


def test_an_evaluation_never_scores_texts_its_run_trained_on(trained_runs, trained, tmp_path):
    """The run's own data split another way (split_seed, test_size; its dataset named again
    or not), or its train_file scored whole, is one line before anything loads: such a split
    holds texts the model learnt (accuracy 0.53 -> 0.66 with split_seed=1, exit 0). Keys an
    evaluation does not read are one line too; the test split's own cap still acts."""
    from src.evaluate import prepare

    def refused(run, *overrides: str) -> str:
        args = [f"run_dir={run}", *overrides]
        with pytest.raises(UserError) as caught:
            prepare(_evaluation(*args), args)
        return str(caught.value)

    run = trained_runs["custom_head"]
    assert refused(run, "dataset.split_seed=7") == (
        f"dataset.split_seed=7: the run {run} drew its test split with split_seed=42; another "
        "draws texts it trained on; keep the run's, or score other data (dataset=files "
        "dataset.test_file=<file>)"
    )
    named = refused(run, "dataset=movie_reviews", "dataset.test_size=0.5")
    assert named.startswith("dataset.test_size=0.5: the run ")
    assert refused(run, "dataset.val_size=0.3").startswith(
        "dataset.val_size: an evaluation scores the test split alone and reads no"
    )
    args = [f"run_dir={run}", "dataset.max_eval_samples=8"]
    assert prepare(_evaluation(*args), args)[0].dataset.max_eval_samples == 8
    data = _labelled_csv(tmp_path / "own.csv", ["pos", "neg"] * 20)
    own = trained(*_OWN_DATA, f"dataset.train_file={data}")
    whole = refused(own, *_OWN_DATA[1:], f"dataset.test_file={data}")
    assert whole == f"dataset.test_file={data}: the file the run {own} trained on; score a " + (
        "file it never saw"
    )
    other = _labelled_csv(tmp_path / "other.csv", ["neg", "pos"] * 5)  # never seen: scored
    args = [f"run_dir={own}", *_OWN_DATA[1:], f"dataset.test_file={other}"]
    assert prepare(_evaluation(*args), args)[0].dataset.test_file == str(other)


@pytest.mark.parametrize("recorded_in", ["metrics.json", "hydra"])
def test_a_runs_relative_data_file_is_read_from_where_it_was_trained(
    trained, tmp_path, monkeypatch, recorded_in
):
    """A run trained as `dataset.train_file=data/own.csv` from its project folder, then scored
    from elsewhere: the path means what it meant to the run (its metrics.json's `started_in`;
    a run from before it: Hydra's record of the run's working directory), for src.evaluate
    and for export's check (Opened.test_split). `started_in` wins over a .hydra/ that a later
    attempt from another folder rewrote."""

    import yaml

    from src.config import rundir
    from src.evaluate import prepare
    from src.outputs.trained import open_folder

    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    data = _labelled_csv(project / "data" / "own.csv", ["pos", "neg"] * 20)
    run = Path(shutil.copytree(trained(*_OWN_DATA, f"dataset.train_file={data}"), tmp_path / "r"))
    config = yaml.safe_load((run / rundir.CONFIG_FILE).read_text())
    config["dataset"]["train_file"] = "data/own.csv"  # as it was typed, in `project`
    (run / rundir.CONFIG_FILE).write_text(yaml.safe_dump(config))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics.pop("started_in") == str(Path.cwd())  # where `trained` ran
    if recorded_in == "metrics.json":
        metrics["started_in"] = str(project)
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / ".hydra").mkdir()
    elsewhere = tmp_path / "elsewhere" if recorded_in == "metrics.json" else project
    (run / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"cwd": str(elsewhere)}}})
    )
    (tmp_path / "elsewhere" / "data").mkdir(parents=True)  # another own.csv, not the run's
    _labelled_csv(tmp_path / "elsewhere" / "data" / "own.csv", ["neg", "pos"] * 30)
    monkeypatch.chdir(tmp_path)  # no data/own.csv here
    cfg, found = prepare(_evaluation(f"run_dir={run}"), [f"run_dir={run}"])
    assert cfg.dataset.train_file == str(data)
    record = evaluate(cfg, tmp_path / "e", found)
    metrics = json.loads((run / "metrics.json").read_text())
    assert record["test_sha256"] == metrics["test_sha256"]
    assert record["test"] == pytest.approx(metrics["test"])
    task = found.task()
    assert len(open_folder(run).test_split(task).texts) == metrics["n_test"]
