"""LoRA through peft (`model.peft=lora`) under both heads and both trainers: only the adapters
and the head train; best_model/ holds merged weights that reload without peft (`pipeline()`,
`src.predict`) and predict what the run predicted; best_model/adapter/ holds the adapters with
the head, which put back on the backbone give the same model; the counts and size are in
metrics.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from src import predict
from src.config.errors import UserError
from src.models import load_trained, lora
from src.trainers.build import build
from src.trainers.loggers import NullLogger
from tests.conftest import PAIRS, compose, first_error, reloaded_and_saved_probs

LORA = ("model.peft=lora", "model.lora.r=4")
RUNS = [("hf_head", "hf"), ("custom_head", "manual"), ("hf_head", "manual"), ("custom_head", "hf")]


def lora_run(trained, model: str, trainer: str):
    return trained(*PAIRS[model, trainer], *LORA)


@pytest.mark.parametrize(("model", "trainer"), RUNS)
def test_merged_model_reloads_without_peft_and_predicts_as_the_run(trained, model, trainer):
    run = lora_run(trained, model, trainer)
    with safe_open(str(run / "best_model" / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "lora_" in k]  # noqa: SIM118 (safe_open has no iter)
    reloaded, saved = reloaded_and_saved_probs(run, compose([*PAIRS[model, trainer], *LORA]))
    np.testing.assert_allclose(reloaded, saved, atol=1e-4)
    counts = json.loads((run / "metrics.json").read_text())["parameters"]
    model_bytes = (run / "best_model" / "model.safetensors").stat().st_size
    assert 0 < counts["trainable"] < counts["total"] / 20
    assert 0 < counts["adapter_bytes"] < model_bytes / 20
    shown = f"LoRA r=4: adapters {counts['adapter_bytes'] / 1e6:.2f} MB in best_model/adapter/"
    for page in (run / "report.md", run / "best_model" / "README.md"):  # the record, once whole
        assert shown in page.read_text(), page


@pytest.mark.parametrize("model", ["hf_head", "custom_head"])
def test_the_adapter_with_its_head_rebuilds_the_model(trained, model):
    """The backbone's weights (the tiny one's initial ones: the seed rebuilds them) plus
    best_model/adapter/ give the merged best_model's logits: the head was saved with it."""
    run = lora_run(trained, model, "manual")
    fresh = build(compose(list(PAIRS[model, "manual"])), NullLogger()).model
    rebuilt = lora.load_adapter(fresh, run / "best_model" / lora.ADAPTER_DIR, {"r": 4}).eval()
    merged = load_trained(run / "best_model").eval()
    ids = torch.tensor([[101, 2023, 3185, 2001, 2307, 102]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        torch.testing.assert_close(
            rebuilt(**batch).logits, merged(**batch).logits, atol=1e-5, rtol=1e-4
        )


def test_only_adapters_and_head_train():
    built = build(compose([*PAIRS["custom_head", "manual"], *LORA]), NullLogger())
    trainable = {n for n, p in built.model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or n.startswith("classifier.") for n in trainable)
    assert {"classifier.weight", "classifier.bias"} <= trainable


def test_pipeline_and_predict_load_the_merged_hf_head(trained, capsys):
    from transformers import pipeline

    run = lora_run(trained, "hf_head", "hf")
    scores = pipeline("text-classification", model=str(run / "best_model"), device="cpu")(
        "a fine film", top_k=None
    )
    assert {s["label"] for s in scores} == {"neg", "pos"}
    capsys.readouterr()  # what training the run printed, when this test is the first to ask
    predict.main([f"run_dir={run}", "text=a fine film"])
    assert capsys.readouterr().out.startswith("label: ")


def test_lora_mistakes_are_one_line():
    assert first_error("debug=smoke", "model.peft=lora", "model.lora.r=0").startswith(
        "error: model.lora.r=0: an integer >= 1"
    )
    assert first_error("debug=smoke", "model.peft=lora", "+model.lora.rank=4").startswith(
        "error: model.lora.rank: not a LoRA key; use r, alpha, dropout, target_modules"
    )
    assert first_error("debug=smoke", "model.peft=qlora").startswith("error: model.peft=qlora")
    with pytest.raises(UserError, match=r"model.lora.target_modules=\['nowhere'\]"):
        build(
            compose([*PAIRS["hf_head", "hf"], *LORA, "model.lora.target_modules=[nowhere]"]),
            NullLogger(),
        )
