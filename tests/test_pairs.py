"""Sentence pairs (`dataset.text_pair_column`): both texts through the tokenizer as a pair,
sharing max_length; a label that depends on both is learnt under both heads and trainers."""

from __future__ import annotations

import csv
import json
from collections import Counter

import numpy as np
import pytest

from src import data
from src.outputs.trained import Predictor
from tests.conftest import first_error, tokenizer_of

PAIR = ["dataset=files", "dataset.text_column=premise", "dataset.text_pair_column=hypothesis"]
WORDS = ("apple", "river")


@pytest.fixture(scope="module")
def tokenizer():
    return tokenizer_of()


@pytest.fixture(scope="module")
def same_or_not(tmp_path_factory):
    """8 pairs labelled `same` when both texts name the same thing: each text alone says
    nothing (every premise, and every hypothesis, comes with either label twice)."""
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    rows = [
        (f"the {a}", f"a {b}", "same" if a == b else "different")
        for _ in range(2)
        for a in WORDS
        for b in WORDS
    ]
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("premise", "hypothesis", "label"), *rows])
    for side in (0, 1):
        assert set(Counter((r[side], r[2]) for r in rows).values()) == {2}
    return path


def test_a_pair_is_what_the_tokenizer_makes_of_it(tokenizer):
    """[CLS] a [SEP] b [SEP], segment ids 0 then 1, exactly as the tokenizer pairs them."""
    (got,) = data.encode_texts(tokenizer, ["a fine film"], 64, "head", pairs=["not at all"])
    expected = tokenizer("a fine film", "not at all")
    assert got["input_ids"] == expected["input_ids"]
    assert got["token_type_ids"] == expected["token_type_ids"] and 1 in got["token_type_ids"]


@pytest.mark.parametrize(
    ("lengths", "budget", "kept"),
    [
        ((100, 5, 20), 20, (15, 5)),
        ((5, 100, 20), 20, (5, 15)),
        ((30, 40, 0), 20, (10, 10)),
        ((8, 9, 0), 20, (8, 9)),
    ],
)
def test_max_length_is_shared(lengths, budget, kept):
    """The shorter text keeps all its pieces up to half the budget, the longer the rest."""
    assert data.tokenize.allot(lengths[0], lengths[1], budget) == kept


def test_each_text_of_a_long_pair_is_cut_to_its_share_by_the_strategy(tokenizer):
    long, short = " ".join(f"w{i}" for i in range(200)), "short one"
    for strategy in ("head", "tail", "head_tail"):
        (got,) = data.encode_texts(tokenizer, [long], 32, strategy, pairs=[short])
        assert len(got["input_ids"]) == 32
        types = got["token_type_ids"]
        pieces = tokenizer(long, add_special_tokens=False)["input_ids"]
        second = tokenizer(short, add_special_tokens=False)["input_ids"]
        kept = got["input_ids"][1 : types.index(1) - 1]  # between [CLS] and the first [SEP]
        assert kept == data.truncate(pieces, 32 - 3 - len(second), strategy)
        assert got["input_ids"][types.index(1) : -1] == second  # the short text whole


def test_chunks_cut_each_text_of_a_pair_as_head_tail(tokenizer, same_or_not):
    """The default's truncation=chunks takes pairs: a pair shares one window, so each text is
    cut to its share as head_tail cuts it (src.trainers.build says so in the log)."""
    assert first_error("truncation=chunks", *PAIR, f"dataset.train_file={same_or_not}") == ""
    long, short = " ".join(f"word{i}" for i in range(80)), "a short one"
    chunks = data.encode_texts(tokenizer, [long], 32, "chunks", pairs=[short])
    assert len(chunks) == 1  # one example per pair, not windows
    assert chunks == data.encode_texts(tokenizer, [long], 32, "head_tail", pairs=[short])
    assert chunks != data.encode_texts(tokenizer, [long], 32, "head", pairs=[short])


@pytest.mark.parametrize("trainer", ["manual", "hf"])
@pytest.mark.parametrize("model", ["custom_head", "hf_head"])
def test_a_label_of_both_texts_is_learnt(trained, same_or_not, model, trainer):
    """debug=overfit on the 8 pairs (tested on the same 8, val_size=0): the loss falls to ~0
    and every pair is right, which no model of one text alone can reach (at most 4 of 8)."""
    run = trained(
        "debug=overfit",
        *PAIR,
        f"dataset.train_file={same_or_not}",
        f"dataset.test_file={same_or_not}",
        "dataset.val_size=0",
        "epochs=60",
        "lr=3e-3",
        f"model={model}",
        f"trainer={trainer}",
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["history"][-1]["train_loss"] < 0.01 and metrics["test"]["accuracy"] == 1.0


def test_segment_ids_reach_the_model(compose_cfg, same_or_not):
    """The batches carry segment 1 on the second text, and the model reads it: the same batch
    with every segment id 0 gives other logits."""
    import torch

    from src.trainers.build import build
    from src.trainers.loggers import NullLogger

    cfg = compose_cfg(
        "debug=overfit",
        *PAIR,
        f"dataset.train_file={same_or_not}",
        f"dataset.test_file={same_or_not}",
        "dataset.val_size=0",
    )
    built = build(cfg, NullLogger())
    batch = built.collator(built.encoded["train"])
    assert (batch["token_type_ids"] == 1).any(dim=1).all()
    model = built.model.eval()
    with torch.no_grad():
        paired = model(**batch).logits
        flat = model(**{**batch, "token_type_ids": torch.zeros_like(batch["token_type_ids"])})
    assert not torch.allclose(paired, flat.logits)


def test_predict_and_pipeline_take_pairs(trained, same_or_not, tmp_path, capsys):
    """src.predict reads both columns of a file (or text= and text_pair=) and gives the run's
    own test predictions; the hf_head export answers pipeline() on {text, text_pair}."""
    from transformers import pipeline

    from src import predict

    run = trained(
        "debug=overfit",
        *PAIR,
        f"dataset.train_file={same_or_not}",
        f"dataset.test_file={same_or_not}",
        "dataset.val_size=0",
        "epochs=60",
        "lr=3e-3",
        "model=hf_head",
        "trainer=hf",
    )
    out = tmp_path / "out.csv"
    predict.main(
        [
            f"run_dir={run}",
            f"input={same_or_not}",
            "text_column=premise",
            "text_pair_column=hypothesis",
            f"output={out}",
        ]
    )
    got = list(csv.DictReader(out.open()))
    saved = list(csv.DictReader((run / "test_predictions.csv").open()))
    assert (
        [r["prediction"] for r in got] == [r["label"] for r in got] == [r["label"] for r in saved]
    )
    capsys.readouterr()
    predict.main([f"run_dir={run}", "text=the apple", "text_pair=a river"])
    assert capsys.readouterr().out.startswith("label: different")
    classify = pipeline("text-classification", model=str(run / "best_model"), device="cpu")
    answers = classify(
        [
            {"text": "the apple", "text_pair": "a apple"},
            {"text": "the apple", "text_pair": "a river"},
        ]
    )
    assert [a["label"] for a in answers] == ["same", "different"]
    probs = Predictor.load(run).probabilities(["the river"], pairs=["a river"])
    assert np.argmax(probs[0]) == Predictor.load(run).label_names.index("same")
    # the file's columns default to the run's own (premise, hypothesis): the same predictions
    predict.main([f"run_dir={run}", f"input={same_or_not}", f"output={tmp_path / 'o2.csv'}"])
    assert list(csv.DictReader((tmp_path / "o2.csv").open())) == got
    pairs = json.loads((run / "best_model" / "preprocessing.json").read_text())["pairs"]
    assert pairs == {"text_column": "premise", "text_pair_column": "hypothesis"}


def test_a_pair_model_refuses_a_lone_text_and_a_single_text_model_a_pair(
    trained, same_or_not, trained_runs
):
    from src import predict
    from src.config.errors import UserError

    run = trained(
        "debug=overfit",
        *PAIR,
        f"dataset.train_file={same_or_not}",
        f"dataset.test_file={same_or_not}",
        "dataset.val_size=0",
        "epochs=60",
        "lr=3e-3",
        "model=hf_head",
        "trainer=hf",
    )
    with pytest.raises(
        UserError,
        match=r"^text_pair= is missing: this run was trained on "
        r"sentence pairs \(its second text: column hypothesis\)",
    ):
        predict.main([f"run_dir={run}", "text=I saw a cat."])
    single = trained_runs["hf_head"]
    with pytest.raises(UserError, match="^text_pair=: this run was trained on single texts"):
        predict.main([f"run_dir={single}", "text=a", "text_pair=b"])
    card = (run / "best_model" / "README.md").read_text()
    assert '`{"text": ..., "text_pair": ...}`' in card and "text_pair_column=hypothesis" in card


def test_a_pair_export_is_served_and_scored_on_the_runs_pairs(
    trained, same_or_not, tmp_path, capsys
):
    """The export's line says how to predict a pair (text_pair= too), and src.evaluate scores
    the export on the run's own test pairs (it used to read movie_reviews and refuse their
    labels as never seen)."""
    from src import export
    from src.config.compose import compose
    from src.evaluate import CONFIG_NAME, evaluate, prepare

    run = trained(
        "debug=overfit",
        *PAIR,
        f"dataset.train_file={same_or_not}",
        f"dataset.test_file={same_or_not}",
        "dataset.val_size=0",
        "epochs=60",
        "lr=3e-3",
        "model=hf_head",
        "trainer=hf",
    )
    out = tmp_path / "export"
    assert export.main([f"run_dir={run}", f"out={out}"]) == 0
    assert (
        capsys.readouterr()
        .out.rstrip()
        .endswith(f'python -m src.predict run_dir={out} text="..." text_pair="..."')
    )
    assert 'text="..." text_pair="..."`' in (out / "README.md").read_text()
    overrides = [f"run_dir={out}"]
    cfg, found = prepare(compose(overrides, config_name=CONFIG_NAME), overrides)
    record = evaluate(cfg, tmp_path / "e", found)
    metrics = json.loads((run / "metrics.json").read_text())
    assert record["test_sha256"] == metrics["test_sha256"] and record["n_test"] == 8
    assert record["test"] == pytest.approx(metrics["test"])
