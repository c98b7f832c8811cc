"""Frozen and cached layers (`backbone.freeze_layers`, `backbone.cache_frozen`): the cache gives
the logits and loss of running every layer, frozen weights do not move in training under both
heads and both trainers, they get no optimizer state, and the saved model reloads alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from src import data
from src.models.frozen import FrozenCache
from src.trainers.build import build
from src.trainers.loggers import NullLogger
from tests.conftest import PAIRS, compose, first_error, reloaded_and_saved_probs

FREEZE = ("backbone.freeze_layers=1",)
CACHE = (*FREEZE, "backbone.cache_frozen=true")
# (model, trainer, cached): every head and trainer freezes; two of the pairs also cache
RUNS = [
    ("hf_head", "hf", True),
    ("custom_head", "manual", True),
    ("hf_head", "manual", False),
    ("custom_head", "hf", False),
]
TEXTS = [
    "a film",
    "a long and rather slow film about a river and a town",
    "bad",
    "the best film of the year, and the longest one too",
]


def frozen_run(trained, model: str, trainer: str, cached: bool):
    return trained(*PAIRS[model, trainer], *(CACHE if cached else FREEZE))


@pytest.mark.parametrize("model", ["hf_head", "custom_head"])
def test_cached_logits_and_loss_equal_running_every_layer(model):
    """Texts of different lengths (so padded batches) through the cache, the first time (filled)
    and the second (read), give the logits and the loss of the uncached forward."""
    built = build(compose([*PAIRS[model, "manual"], *CACHE]), NullLogger())
    built.frozen.close()  # its rows are the corpus's; this test numbers its own
    encoded = data.encode_texts(built.tokenizer, TEXTS, 64, "head")
    examples = [{**e, "labels": i % 2, "cache_row": i} for i, e in enumerate(encoded)]
    net = built.model.eval()
    cache = FrozenCache(net, 1, [len(e["input_ids"]) for e in examples], torch.float32)
    cached = cache.model.eval()
    batch = built.collator(examples)
    rows = batch.pop("cache_rows")
    with torch.no_grad():
        plain = net(**batch)
        filled = cached(**batch, cache_rows=rows)
        read = cached(**batch, cache_rows=rows)
        half = cached(**built.collator(examples[2:]))  # its cache_rows: rows 2 and 3
        whole = cached(**batch)  # no rows: the model itself, every layer
    assert cache.filled.all()
    for out in (filled, read):
        torch.testing.assert_close(out.logits, plain.logits, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out.loss, plain.loss, atol=1e-5, rtol=1e-4)
    # another batching of the same examples (other padding) reads the same rows
    torch.testing.assert_close(half.logits, plain.logits[2:], atol=1e-5, rtol=1e-4)
    assert torch.equal(whole.logits, plain.logits)
    # the model itself was never changed: its layers, its modules, no hook of the cache's
    assert len(net.base_model.encoder.layer) == 2 and not net._forward_pre_hooks


@pytest.mark.parametrize(("model", "trainer", "cached"), RUNS)
def test_frozen_weights_do_not_move(trained, model, trainer, cached):
    """After training, the saved model's embeddings and lower layer are its initial ones (the
    same seed rebuilds them); the upper layer and the head have moved."""
    run = frozen_run(trained, model, trainer, cached)
    initial = build(compose([*PAIRS[model, trainer], *FREEZE]), NullLogger()).model.state_dict()
    saved = load_file(str(run / "best_model" / "model.safetensors"))
    prefix = "bert." if model == "hf_head" else "encoder."
    lower = (f"{prefix}embeddings.", f"{prefix}encoder.layer.0.")
    frozen = [k for k in saved if k.startswith(lower)]
    moving = [k for k in saved if k.startswith(f"{prefix}encoder.layer.1.") or "classifier" in k]
    assert frozen and moving
    assert all(torch.equal(saved[k], initial[k]) for k in frozen)
    assert any(not torch.equal(saved[k], initial[k]) for k in moving)


@pytest.mark.parametrize(("model", "trainer", "cached"), RUNS[:2])
def test_cached_run_reloads_with_its_predictions(trained, model, trainer, cached):
    """The saved model, reloaded alone and running every layer, gives the probabilities the
    cached run wrote for the test split."""
    run = frozen_run(trained, model, trainer, cached)
    reloaded, saved = reloaded_and_saved_probs(run, compose([*PAIRS[model, trainer], *CACHE]))
    np.testing.assert_allclose(reloaded, saved, atol=1e-4)


def test_frozen_parameters_get_no_gradient_and_no_optimizer_state():
    built = build(compose([*PAIRS["custom_head", "manual"], *FREEZE]), NullLogger())
    in_optimizer = {id(p) for group in built.optimizer.param_groups for p in group["params"]}
    trainable = {id(p) for p in built.model.parameters() if p.requires_grad}
    frozen = [p for p in built.model.encoder.embeddings.parameters()]
    assert in_optimizer == trainable
    assert frozen and not any(p.requires_grad for p in frozen)
    # while the model trains, the frozen layer runs in eval mode (no dropout), the upper one not
    net, ids = built.model.train(), torch.tensor([[101, 2023, 102]])
    net(input_ids=ids, attention_mask=torch.ones_like(ids))
    lower, upper = net.encoder.encoder.layer
    assert not any(m.training for m in lower.modules()) and upper.training


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("backbone.freeze_layers=3",),
            "backbone.freeze_layers=3: backbone tiny-random-bert has 2 encoder layers; use 0 to 2",
        ),
        (("backbone.cache_frozen=true",), "backbone.cache_frozen=true: nothing is frozen to cache"),
    ],
)
def test_frozen_mistakes_are_one_line(args, line):
    assert first_error("debug=smoke", *args).startswith(f"error: {line}")
