"""Predict and export: a text, a file, the pipeline() load, one clear line for a wrong folder."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from src import data, predict
from src.config.errors import UserError
from src.outputs.trained import Predictor
from tests.conftest import run_cli

HEADS = ["hf_head", "custom_head"]
REVIEW = "A gripping, beautifully acted film (with a twist), 'really' worth it."


def _test_split() -> data.Split:
    """The smoke run's test split: what test_predictions.csv holds, in the same order."""
    return data.MovieReviews(max_train_samples=48, max_eval_samples=32).load().test


def _probs(rows: list[dict], names: list[str]) -> np.ndarray:
    return np.array([[float(r[f"p_{n}"]) for n in names] for r in rows])


@pytest.mark.parametrize("model", HEADS)
def test_text_prints_label_and_probabilities(trained_runs, model, capsys):
    predict.main([f"run_dir={trained_runs[model]}", f"text={REVIEW}"])
    label_line, probs_line = capsys.readouterr().out.strip().splitlines()
    label = label_line.removeprefix("label: ")
    probs = dict(pair.split("=") for pair in probs_line.removeprefix("probabilities: ").split())
    assert set(probs) == {"neg", "pos"} and label == max(probs, key=lambda n: float(probs[n]))


@pytest.mark.parametrize(("model", "suffix"), [("hf_head", ".csv"), ("custom_head", ".jsonl")])
def test_file_predictions_match_the_run(trained_runs, tmp_path, model, suffix):
    """Whole reviews (longer than max_length), so this also checks the run's truncation; the CSV
    starts with a byte-order mark, as Excel writes it."""
    split = _test_split()
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(split.texts)]
    source = tmp_path / f"reviews{suffix}"
    if suffix == ".csv":
        with source.open("w", newline="", encoding="utf-8-sig") as f:
            writer = csv.DictWriter(f, fieldnames=["id", "text"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.csv"
    predict.main(
        [f"run_dir={trained_runs[model]}", f"input={source}", f"output={out}", "batch_size=5"]
    )

    got = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["id"] for r in got] == [r["id"] for r in rows]
    assert [r["text"] for r in got] == split.texts
    run = list(csv.DictReader((trained_runs[model] / "test_predictions.csv").open()))
    np.testing.assert_allclose(_probs(got, ["neg", "pos"]), _probs(run, ["neg", "pos"]), atol=1e-4)
    assert [r["prediction"] for r in got] == [r["prediction"] for r in run]


def test_txt_input_writes_beside_it_from_the_model_folder(trained_runs, tmp_path, capsys):
    """A .txt's predictions go beside it as CSV under its whole name, a table's in its own
    format: reviews.txt and reviews.jsonl in one folder keep apart (they shared one file)."""
    source, table = tmp_path / "reviews.txt", tmp_path / "reviews.jsonl"
    source.write_text(f"{REVIEW}\n\nDull and far too long.\n", encoding="utf-8-sig")  # a BOM
    table.write_text(json.dumps({"text": "An instant classic."}) + "\n", encoding="utf-8")
    run = f"run_dir={trained_runs['custom_head'] / 'best_model'}"
    predict.main([run, f"input={source}"])
    out = capsys.readouterr().out
    assert "wrote 2 predictions" in out and "; 1 empty text kept its row, no prediction" in out
    predict.main([run, f"input={table}"])
    got = list(csv.DictReader((tmp_path / "reviews.txt.predictions.csv").open(encoding="utf-8")))
    assert [r["text"] for r in got] == [REVIEW, "", "Dull and far too long."]  # row i = line i
    assert {got[0]["prediction"], got[2]["prediction"]} <= {"neg", "pos"}
    assert got[1]["prediction"] == got[1]["p_pos"] == ""  # the blank line: no prediction
    lines = (tmp_path / "reviews.predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["An instant classic."]
    assert sorted(p.name for p in tmp_path.iterdir() if "predictions" in p.name) == [
        "reviews.predictions.jsonl",
        "reviews.txt.predictions.csv",
    ]


def test_an_empty_cell_keeps_its_row_and_the_rest_is_predicted(trained_runs, tmp_path, capsys):
    source = tmp_path / "in.csv"
    source.write_text("id,text\na,A fine film.\nb,\nc,Dull.\n", encoding="utf-8")
    predict.main([f"run_dir={trained_runs['hf_head']}", f"input={source}"])
    got = list(csv.DictReader((tmp_path / "in.predictions.csv").open()))
    assert [r["id"] for r in got] == ["a", "b", "c"] and got[1]["prediction"] == ""
    assert got[0]["prediction"] in ("neg", "pos") and got[2]["prediction"] in ("neg", "pos")
    assert "; 1 empty text kept its row" in capsys.readouterr().out


def test_pipeline_loads_hf_head_export_with_label_names(trained_runs):
    from transformers import pipeline

    folder = trained_runs["hf_head"] / "best_model"
    classify = pipeline("text-classification", model=str(folder), device="cpu")
    texts = [REVIEW, "Dull and far too long.", "An instant classic."]
    scores = classify(texts, top_k=None)
    assert all({s["label"] for s in per_text} == {"neg", "pos"} for per_text in scores)

    ours = Predictor.load(folder, device="cpu")
    probs = ours.probabilities(texts)
    for per_text, row in zip(scores, probs, strict=True):
        by_label = {s["label"]: s["score"] for s in per_text}
        assert max(by_label, key=by_label.get) == ours.label_names[int(row.argmax())]
        np.testing.assert_allclose([by_label["neg"], by_label["pos"]], row, atol=1e-5)
    # truncation=True cuts at the run's max_length (saved as the tokenizer's model_max_length)
    assert classify.tokenizer.model_max_length == ours.max_length == 64
    classify("great " * 1000, truncation=True)


@pytest.mark.parametrize("model", HEADS)
def test_model_folder_explains_how_to_load_it(trained_runs, model):
    folder = trained_runs[model] / "best_model"
    readme = (folder / "README.md").read_text()
    assert "0=neg, 1=pos" in readme and "head_tail" in readme
    assert ("load_trained" in readme) == (model == "custom_head")
    assert ('pipeline("text-classification"' in readme) == (model == "hf_head")
    assert json.loads((folder / "preprocessing.json").read_text()) == {
        "max_length": 64,
        "truncation": "head_tail",
        "task": {"name": "single_label"},
        "run_id": json.loads((folder.parent / "metrics.json").read_text())["run_id"],
    }


def test_not_a_run_is_one_line_exit_2(tmp_path):
    (tmp_path / "run.log").write_text("crashed before the end\n")
    proc = run_cli(f"run_dir={tmp_path}", "text=hello", module="src.predict", timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "not a folder any command of this project wrote" in proc.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["text=hi"], "run_dir=.* is required"),
        (["run_dir=x"], "give one of text="),
        (["run_dir=x", "text=a", "input=b"], "give one of text="),
        (["run_dir=x", "text=a", "output=o.csv"], "output= goes with input="),
        (["run_dir=x", "text=a", "text_column=review"], "text_column= goes with input="),
        (["run_dir=x", "input=in.csv", "output=./in.csv"], "output=./in.csv: the input itself"),
        (["run_dir=x", "text=a", "colour=red"], "colour=red: expected key=value"),
        (["run_dir=x", "text=a", "batch_size=0"], "batch_size=0"),
        (
            ["run_dir=x", "input=a.csv", "output=p.xlsx"],
            r"output=p.xlsx: predictions are "
            r"written as .csv, .tsv, .jsonl",
        ),
    ],
)
def test_bad_arguments(argv, message):
    with pytest.raises(UserError, match=message):
        predict.parse_args(argv)


def test_a_jsonl_row_without_the_text_key_is_named(trained_runs, tmp_path):
    """A JSON Lines row lacking the text key is one line naming the row (it was predicted as
    an empty text, its row kept with no prediction); an empty string is an empty text."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "A fine film."}\n{"text": ""}\n{"id": 3}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"in.jsonl: row 3 has no 'text' \(an empty text is"):
        predict.main([f"run_dir={trained_runs['hf_head']}", f"input={source}"])
    assert not (tmp_path / "in.predictions.jsonl").exists()


def test_missing_text_column(trained_runs, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("review\nnice\n")
    with pytest.raises(UserError, match="no column 'text' .*set text_column="):
        predict.main([f"run_dir={trained_runs['hf_head']}", f"input={source}"])
    predict.main([f"run_dir={trained_runs['hf_head']}", f"input={source}", "text_column=review"])
    assert (tmp_path / "in.predictions.csv").is_file()


def test_the_output_is_written_in_the_format_its_extension_names(trained_runs, tmp_path):
    """output=x.tsv is tab-separated, x.jsonl one JSON object a row, both with the CSV's cells."""
    source = tmp_path / "in.csv"
    source.write_text('id,text\na,"A fine, warm film."\nb,Dull.\n', encoding="utf-8")
    run = trained_runs["hf_head"]
    tables = {}
    for suffix in (".csv", ".tsv", ".jsonl"):
        out = tmp_path / f"out{suffix}"
        predict.main([f"run_dir={run}", f"input={source}", f"output={out}"])
        if suffix == ".jsonl":
            tables[suffix] = [json.loads(line) for line in out.read_text().splitlines()]
        else:
            tables[suffix] = list(
                csv.DictReader(out.open(), delimiter="," if suffix == ".csv" else "\t")
            )
    assert tables[".tsv"] == tables[".csv"] and tables[".csv"][0]["text"] == "A fine, warm film."
    for row, line in zip(tables[".csv"], tables[".jsonl"], strict=True):
        assert line["id"] == row["id"] and line["prediction"] == row["prediction"]
        assert line["p_pos"] == pytest.approx(float(row["p_pos"]))


@pytest.mark.parametrize("column", ["prediction", "p_pos"])
def test_an_input_column_the_predictions_would_overwrite_is_one_line(
    trained_runs, tmp_path, column
):
    source = tmp_path / "in.csv"
    source.write_text(f"text,{column}\nA fine film.,mine\n")
    with pytest.raises(
        UserError,
        match=f"^input={source}: its column '{column}' would be "
        "overwritten by the predictions \\(they add prediction, p_neg, p_pos\\)",
    ):
        predict.main([f"run_dir={trained_runs['hf_head']}", f"input={source}"])
    assert not (tmp_path / "in.predictions.csv").exists()
