"""Data: the notebook's split, the files loader, truncation strategies, the collator."""

from __future__ import annotations

import json

import pytest

from src import data
from src.config.errors import UserError
from src.tasks import inference
from tests.conftest import tokenizer_of


@pytest.fixture(scope="module")
def tokenizer():
    return tokenizer_of()


def test_movie_reviews_split_is_the_notebooks():
    from nltk.corpus import movie_reviews as mr
    from sklearn.model_selection import train_test_split

    corpus = data.MovieReviews(val_size=0.0).load()  # the notebook's: no validation split
    assert (len(corpus.train), len(corpus.test)) == (1600, 400)
    assert corpus.train.labels.count(1) == 800 and corpus.train.labels.count(0) == 800
    assert corpus.test.labels.count(1) == 200 and corpus.test.labels.count(0) == 200
    assert corpus.id2label == {0: "neg", 1: "pos"}
    assert corpus.eval is corpus.test and corpus.eval_split == "test"

    # The notebook: reviews in fileids() order, LabelEncoder (pos=1), train_test_split(...)
    fileids = mr.fileids()
    y = [1 if mr.categories(f)[0] == "pos" else 0 for f in fileids]
    ids_tr, ids_te, _, _ = train_test_split(
        fileids, y, stratify=y, random_state=42, test_size=0.2, shuffle=True
    )
    assert corpus.train.texts == [mr.raw(f) for f in ids_tr]
    assert corpus.test.texts == [mr.raw(f) for f in ids_te]


def test_validation_split_comes_from_train():
    corpus = data.MovieReviews(val_size=0.1).load()
    assert (len(corpus.train), len(corpus.eval), len(corpus.test)) == (1440, 160, 400)
    assert corpus.eval_split == "validation"
    assert not set(corpus.eval.texts) & set(corpus.test.texts)


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("head", list(range(0, 8))),
        ("tail", list(range(12, 20))),
        ("head_tail", [0, 1] + list(range(14, 20))),
    ],
)
def test_truncation_keeps_the_right_pieces(strategy, expected):
    assert data.truncate(list(range(20)), 8, strategy) == expected


def test_head_tail_is_128_plus_382_at_512():
    kept = data.truncate(list(range(1000)), 510, "head_tail")
    assert kept[:128] == list(range(128)) and kept[128:] == list(range(618, 1000))


def test_short_sequences_are_untouched():
    assert data.truncate([1, 2, 3], 8, "head_tail") == [1, 2, 3]


def test_unknown_truncation_is_a_user_error():
    with pytest.raises(UserError, match="truncation=middle"):
        data.truncate(list(range(20)), 8, "middle")


def test_encode_adds_special_tokens_and_respects_max_length(tokenizer):
    split = data.Split(["good " * 100 + "terrible ending", "short"], [0, 1])
    enc = data.encode(tokenizer, split, max_length=16, truncation="head_tail")
    first = enc[0]["input_ids"]
    assert (
        len(first) == 16
        and first[0] == tokenizer.cls_token_id
        and first[-1] == tokenizer.sep_token_id
    )
    assert tokenizer.decode(first[-3:-1]) == "terrible ending"
    assert len(enc[1]["input_ids"]) == 3 and enc[1]["labels"] == 1
    assert set(enc[0]) == {"input_ids", "attention_mask", "token_type_ids", "labels", "doc"}
    assert inference.docs(enc) == [0, 1]  # one example per text unless truncation=chunks


def test_collator_pads_per_batch(tokenizer):
    split = data.Split(["a b c d e f", "a"], [0, 1])
    batch = data.collator(tokenizer)(data.encode(tokenizer, split, 64, "head"))
    assert batch["input_ids"].shape == (2, 8)  # the longest in the batch, not max_length
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert batch["labels"].tolist() == [0, 1]


def _write_csv(path, rows, sep=","):
    path.write_text("\n".join(sep.join(r) for r in rows) + "\n", encoding="utf-8")


def test_files_csv_with_split_maps_sorted_labels(tmp_path):
    rows = [("review", "sentiment")] + [
        (f"text {i}", ["neutral", "bad", "good"][i % 3]) for i in range(30)
    ]
    _write_csv(tmp_path / "d.csv", rows)
    corpus = data.Files(  # val_size=0: train and test only
        val_size=0.0,
        train_file=str(tmp_path / "d.csv"),
        text_column="review",
        label_column="sentiment",
        test_size=0.2,
    ).load()
    assert corpus.label_names == ["bad", "good", "neutral"]
    assert (len(corpus.train), len(corpus.test)) == (24, 6)
    assert sorted(corpus.test.labels) == [0, 0, 1, 1, 2, 2]  # stratified


def test_files_tsv_and_jsonl_with_test_file(tmp_path):
    _write_csv(
        tmp_path / "train.tsv",
        [("text", "label")] + [(f"t{i}", str(i % 2)) for i in range(10)],
        sep="\t",
    )
    (tmp_path / "test.jsonl").write_text(
        "\n".join(json.dumps({"text": f"x{i}", "label": str(i % 2)}) for i in range(4)) + "\n"
    )
    corpus = data.Files(  # val_size=0: train and test only
        val_size=0.0, train_file=str(tmp_path / "train.tsv"), test_file=str(tmp_path / "test.jsonl")
    ).load()
    assert (len(corpus.train), len(corpus.test)) == (10, 4)
    assert corpus.test.labels == [0, 1, 0, 1]


def test_numeric_labels_sort_as_numbers():
    assert data.label_list(["10", "2", "1"]) == ["1", "2", "10"]


def test_csv_keeps_newlines_inside_quoted_texts(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"line one\nline two\n",a\nshort,b\n', encoding="utf-8")
    assert data.read_rows(path)[0]["text"] == "line one\nline two\n"


def test_csv_from_excel_has_its_byte_order_mark_stripped(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("text,label\ngood film,pos\nbad film,neg\n".encode("utf-8-sig"))
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    corpus = data.Files(train_file=str(path), test_file=str(path), val_size=0.0).load()
    assert corpus.train.texts == ["good film", "bad film"]
    assert corpus.label_names == ["neg", "pos"]


def test_csv_text_longer_than_the_csv_modules_default_limit(tmp_path):
    long_text = "word " * 60_000  # 300,000 characters: over csv's default 131,072
    path = tmp_path / "long.csv"
    path.write_text(f'text,label\n"{long_text}",a\nshort,b\n', encoding="utf-8")
    assert data.read_rows(path)[0]["text"] == long_text


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("d.csv", "text,label,text\na,pos,b\n", "header"),
        ("d.tsv", "label\ttext\tlabel\npos\ta\tneg\n", "header"),
        (
            "d.jsonl",
            '{"text": "a", "label": "pos"}\n{"text": "b", "label": "x", "label": "y"}\n',
            "line 2",
        ),
    ],
)
def test_a_column_named_twice_is_one_line(tmp_path, name, text, where):
    """A dict keeps the last of two equal keys: the file is refused instead of read wrongly."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    column = "label" if name != "d.csv" else "text"
    with pytest.raises(UserError, match=rf"{where}: column '{column}' appears twice; rename"):
        data.read_rows(path)
