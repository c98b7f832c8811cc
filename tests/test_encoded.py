"""Encoded splits as arrays (src.data.Encoded): the batches they give are those of the model
inputs transformers' own tokenizer makes (single texts and pairs), a tokenize-cache hit
memory-maps the same arrays, they take 4 bytes a word piece, and a large data file is read row
by row."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from src import data
from src.data import corpora
from tests.conftest import tokenizer_of

TEXTS = ["good " * 300 + "but a terrible ending", "short and sweet", "fine " * 40, "ok"]
PAIRS = ["it was good", "not at all " * 30, "fine", "a b c"]


@pytest.fixture(scope="module")
def tokenizer():
    return tokenizer_of()


def reference(tokenizer, texts, pairs=None) -> list[dict]:
    """The list of dicts the encoded splits were before: what transformers' tokenizer makes
    with its own truncation (head; longest_first for pairs), with the split's labels."""
    sides = (texts,) if pairs is None else (texts, pairs)
    out = tokenizer(*sides, truncation=True, max_length=64, return_token_type_ids=True)
    rows = zip(out["input_ids"], out["token_type_ids"], strict=True)
    return [
        {
            "input_ids": ids,
            "attention_mask": [1] * len(ids),
            "token_type_ids": types,
            "doc": i,
            "labels": i % 2,
        }
        for i, (ids, types) in enumerate(rows)
    ]


@pytest.mark.parametrize("pairs", [None, PAIRS], ids=["texts", "pairs"])
def test_array_backed_batches_equal_the_list_of_dicts(tokenizer, tmp_path, pairs):
    """The same batches, fresh and from a (memory-mapped) cache hit, as the lists of dicts."""
    split = data.Split(TEXTS, [0, 1, 0, 1], pairs)
    expected = reference(tokenizer, TEXTS, pairs)
    fresh = data.encode(tokenizer, split, 64, "head")
    data.encode_cached(tokenizer, split, 64, "head", 0, tmp_path)
    hit = data.encode_cached(tokenizer, split, 64, "head", 0, tmp_path)
    assert isinstance(hit.ids, np.memmap)
    collate = data.collator(tokenizer)
    for encoded in (fresh, hit):
        assert list(encoded) == expected
        for rows in ([0, 1], [2, 3], [3, 0, 2]):
            got, want = collate([encoded[i] for i in rows]), collate([expected[i] for i in rows])
            assert got.keys() == want.keys()
            assert all(torch.equal(got[k], want[k]) for k in want)
        np.testing.assert_array_equal(encoded.targets(), [0, 1, 0, 1])


def test_arrays_take_four_bytes_a_word_piece(tokenizer):
    split = data.Split(TEXTS * 50, [0, 1, 0, 1] * 50)
    encoded = data.encode(tokenizer, split, 64, "head")
    pieces = int(encoded.lengths.sum())
    assert encoded.ids.dtype == np.int32 and len(encoded.ids) == pieces
    assert encoded.types is None  # one text: segment ids all 0, not stored
    assert encoded.nbytes == 4 * pieces + 8 * len(encoded)  # ids, then lengths and doc


def test_a_data_file_is_read_row_by_row(tmp_path, monkeypatch):
    """Files.read takes rows as the reader yields them: the file is never read whole, and the
    rows are the ones read_rows gives."""
    path = tmp_path / "big.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *((f"review {i}", "pos") for i in range(500))])
    monkeypatch.setattr(corpora, "read_text", lambda p: pytest.fail("read the file whole"))
    monkeypatch.setattr(type(path), "read_text", lambda *a, **k: pytest.fail("read whole"))
    split = data.Files(train_file=str(path)).read(path)
    assert split.texts == [r["text"] for r in data.read_rows(path)]
    assert len(split) == 500 and split.pairs is None
