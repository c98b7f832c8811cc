"""The tokenize cache: a hit gives exactly what tokenizing gives, any change of what the
encoding depends on misses, parallel writers leave one whole file, a sweep tokenizes once, and
`tokenize_cache=null` turns it off."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from src import data
from tests.conftest import tokenizer_of

TEXTS = ["good " * 300 + "but a terrible ending", "short and sweet", "fine " * 40]


@pytest.fixture(scope="module")
def tokenizer():
    return tokenizer_of()


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*"))


@pytest.mark.parametrize(("truncation", "stride"), [("head_tail", 0), ("chunks", 16)])
def test_a_hit_is_exactly_what_tokenizing_gives(
    tokenizer, tmp_path, monkeypatch, truncation, stride
):
    split = data.Split(TEXTS, [1, 0, 1])
    fresh = data.encode(tokenizer, split, 64, truncation, stride)
    first = data.encode_cached(tokenizer, split, 64, truncation, stride, tmp_path)
    assert len(_entries(tmp_path)) == 1 and first == fresh

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("a cache hit must not tokenize")

    monkeypatch.setattr(data.cache, "encode", no_tokenizing)  # what encode_cached calls
    relabelled = data.Split(TEXTS, [0, 1, 0])  # labels are not cached: they come from the split
    hit = data.encode_cached(tokenizer, relabelled, 64, truncation, stride, tmp_path)
    assert hit == [{**e, "labels": relabelled.labels[e["doc"]]} for e in fresh]
    assert len(hit) > len(TEXTS) if truncation == "chunks" else len(hit) == len(TEXTS)


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "arrays that do not fit"])
def test_an_entry_that_cannot_be_read_is_dropped_and_tokenized_again(
    tokenizer, tmp_path, caplog, damage
):
    """A full disk or a killed copy leaves a damaged entry under a valid key: every later run
    with that key would crash on it. It is dropped with a warning, and the texts tokenized and
    stored again."""
    import logging

    import numpy as np

    split = data.Split(TEXTS, [1, 0, 1])
    fresh = data.encode_cached(tokenizer, split, 64, "head_tail", 0, tmp_path)
    (entry,) = _entries(tmp_path)
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    elif damage == "not a zip":
        entry.write_bytes(b"\0" * 100)
    else:
        with entry.open("wb") as f:
            np.savez(
                f,
                input_ids=np.zeros(3, np.int32),
                lengths=np.array([5], np.int32),
                doc=np.array([0], np.int32),
            )
    with caplog.at_level(logging.WARNING):
        again = data.encode_cached(tokenizer, split, 64, "head_tail", 0, tmp_path)
    assert again == fresh
    assert f"tokenize cache: dropped {entry}" in caplog.text
    assert _entries(tmp_path) == [entry]  # stored again, whole
    assert data.encode_cached(tokenizer, split, 64, "head_tail", 0, tmp_path) == fresh


def test_any_change_misses(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    split = data.Split(TEXTS, [1, 0, 1])
    cased = AutoTokenizer.from_pretrained(tokenizer.name_or_path, do_lower_case=False)
    variants = [
        (tokenizer, split, 64, "head_tail", 0),
        (tokenizer, split, 32, "head_tail", 0),  # max_length
        (tokenizer, split, 64, "head", 0),  # truncation
        (tokenizer, split, 64, "chunks", 8),
        (tokenizer, split, 64, "chunks", 16),  # stride, under chunks
        (cased, split, 64, "head_tail", 0),  # the tokenizer
        (tokenizer, data.Split([*TEXTS[:2], "fine"], [1, 0, 1]), 64, "head_tail", 0),  # the data
    ]
    for n, variant in enumerate(variants, start=1):
        data.encode_cached(*variant, cache_dir=tmp_path)
        assert len(_entries(tmp_path)) == n, f"variant {n} hit another's entry"
    data.encode_cached(tokenizer, split, 64, "head_tail", 7, cache_dir=tmp_path)  # stride unused
    assert len(_entries(tmp_path)) == len(variants)


def test_the_key_ignores_what_a_tokenizer_call_leaves_behind(tokenizer):
    """A fast tokenizer's serialized form holds the truncation and padding of its last call: a
    job whose train split hit the cache (no call yet) must still hit on the next split."""
    before = data.fingerprint(tokenizer, TEXTS, 64, "head", 0)
    tokenizer(TEXTS, truncation=True, max_length=16, padding="max_length")
    backend = tokenizer.backend_tokenizer
    left = (backend.padding, backend.truncation)
    assert left[0]["length"] == 16 and left[1]["max_length"] == 16
    assert data.fingerprint(tokenizer, TEXTS, 64, "head", 0) == before
    assert (backend.padding, backend.truncation) == left  # set aside for the key, put back


def _encode_in_a_process(folder: str, start) -> int:
    tokenizer = tokenizer_of()
    split = data.Split(TEXTS * 200, [1, 0, 1] * 200)
    start.wait()  # both processes miss, tokenize and write at the same time
    return len(data.encode_cached(tokenizer, split, 64, "head_tail", 0, folder))


def test_parallel_writers_leave_one_whole_entry(tokenizer, tmp_path):
    context = multiprocessing.get_context("spawn")
    start = context.Manager().Barrier(2)
    with context.Pool(2) as pool:
        sizes = pool.starmap(_encode_in_a_process, [(str(tmp_path), start)] * 2)
    assert sizes == [600, 600]
    assert [p.suffix for p in _entries(tmp_path)] == [".npz"]  # no temporary file left
    split = data.Split(TEXTS * 200, [1, 0, 1] * 200)
    read = data.encode_cached(tokenizer, split, 64, "head_tail", 0, tmp_path)
    assert read == data.encode(tokenizer, split, 64, "head_tail", 0)


def test_runs_tokenize_once_and_null_turns_it_off(tmp_path, caplog):
    """Two runs that differ in what tokenizing ignores (a sweep's jobs: dropout 0.1, 0.2) share
    the entries of their three splits: the first stores them, the second reads them. The splits
    are tokenized in `build`, as each run builds itself; tokenize_cache=null stores nothing."""
    import logging

    from src.config.compose import compose
    from src.trainers.build import build
    from src.trainers.loggers import NullLogger

    cache = tmp_path / "cache"
    logs = []
    for setting in ("dropout=0.1", "dropout=0.2", "tokenize_cache=null"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="src.data.cache"):
            build(compose(["debug=smoke", f"tokenize_cache={cache}", setting]), NullLogger())
        logs.append(caplog.text)
    first, second, off = logs
    assert first.count("stored in") == 3 and second.count("read from") == 3  # train, eval, test
    assert "stored in" not in second and len(_entries(cache)) == 3
    assert "stored in" not in off and "read from" not in off
