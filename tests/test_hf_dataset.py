"""`dataset=hf`: what `datasets.load_dataset` reads, offline: parquet files through the parquet
builder, a local folder of files, a `save_to_disk` folder; label names from a ClassLabel, else
the sorted label strings; missing splits as `dataset=files`; one line for each mistake."""

from __future__ import annotations

import json

import pytest

from src import data
from src.config.errors import UserError

# ClassLabel order on purpose not sorted: the names must come from the feature, not a sort.
NAMES = ["positive", "negative"]


def _dataset(n: int, offset: int = 0, hidden: bool = False):
    """n rows whose text shows their ClassLabel; `hidden`: labels -1, as GLUE's test splits."""
    import datasets

    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=NAMES)}
    )
    rows = {
        "sentence": [f"review {offset + i} is {NAMES[i % 2]}" for i in range(n)],
        "label": [-1 if hidden else i % 2 for i in range(n)],
    }
    return datasets.Dataset.from_dict(rows, features=features)


def _hf(**keys) -> data.HFDataset:
    return data.HFDataset(**{"text_column": "sentence", "val_size": 0.0, **keys})


def test_parquet_files_keep_their_classlabel_names(tmp_path):
    _dataset(40).to_parquet(str(tmp_path / "train.parquet"))
    _dataset(10, offset=100).to_parquet(str(tmp_path / "test.parquet"))
    files = {"train": str(tmp_path / "train.parquet"), "test": str(tmp_path / "test.parquet")}
    corpus = _hf(path="parquet", data_files=files).load()

    assert corpus.label_names == NAMES  # from the ClassLabel, in its order
    assert (len(corpus.train), len(corpus.test)) == (40, 10)
    assert corpus.test.texts[3] == "review 103 is negative" and corpus.test.labels[3] == 1


def test_a_local_folder_of_csv_files_with_string_labels_and_no_test_split(tmp_path):
    folder = tmp_path / "reviews"
    folder.mkdir()
    lines = ["sentence,label", *(f"text {i},{['good', 'bad'][i % 2]}" for i in range(50))]
    (folder / "train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = _hf(path=str(folder), test_size=0.2).load()

    assert corpus.label_names == ["bad", "good"]  # no ClassLabel: sorted strings, as files
    assert (len(corpus.train), len(corpus.test)) == (40, 10)  # no test split: stratified
    assert sorted(corpus.test.labels) == [0] * 5 + [1] * 5


def test_save_to_disk_folder_with_a_validation_split(tmp_path):
    import datasets

    folder = tmp_path / "saved"
    splits = {"train": _dataset(30), "validation": _dataset(8, 50), "test": _dataset(6, 90)}
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    corpus = _hf(path=str(folder), validation_split="validation", val_size=0.5).load()

    assert corpus.eval_split == "validation"
    assert (len(corpus.train), len(corpus.eval), len(corpus.test)) == (30, 8, 6)  # not carved
    assert corpus.eval.texts[0] == "review 50 is positive"


def test_hidden_test_labels_are_one_clear_line(tmp_path):
    _dataset(20).to_parquet(str(tmp_path / "train.parquet"))
    _dataset(6, hidden=True).to_parquet(str(tmp_path / "test.parquet"))
    files = {"train": str(tmp_path / "train.parquet"), "test": str(tmp_path / "test.parquet")}
    with pytest.raises(UserError, match=r"split 'test': labels outside 0..1 \(-1: hidden"):
        _hf(path="parquet", data_files=files).load()
    corpus = _hf(path="parquet", data_files=files, test_split=None, test_size=0.25).load()
    assert (len(corpus.train), len(corpus.test)) == (15, 5)  # the fix the message names


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"train_split": "training"},
            "no split 'training' (found: train, test); set dataset.train",
        ),
        ({"text_column": "text"}, "no column 'text' (found: sentence, label); set dataset.text_"),
        ({"path": "/nowhere/at/all"}, "dataset.path=/nowhere/at/all: datasets cannot load it"),
    ],
)
def test_mistakes_name_the_key(tmp_path, keys, message):
    import datasets

    datasets.DatasetDict(train=_dataset(10), test=_dataset(4)).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        data.HFDataset(**{"path": str(tmp_path / "d"), "text_column": "sentence", **keys}).load()


def test_a_run_on_a_local_folder_end_to_end(tmp_path):
    import datasets

    folder = tmp_path / "saved"
    datasets.DatasetDict(train=_dataset(60), test=_dataset(20, 100)).save_to_disk(str(folder))
    from src.config.compose import compose
    from src.run import train

    run_dir = tmp_path / "run"
    train(
        compose(
            ["debug=smoke", "dataset=hf", f"dataset.path={folder}", "dataset.text_column=sentence"]
        ),
        run_dir,
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["label_names"] == NAMES and metrics["n_test"] == 20
    assert (metrics["n_train"], metrics["n_eval"]) == (48, 6)  # 54 / 6 carved, train capped
    from huggingface_hub import ModelCard

    card = ModelCard.load(run_dir / "best_model" / "README.md")
    assert {r.dataset_type for r in card.data.eval_results} == {str(folder)}
