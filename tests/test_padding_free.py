"""Padding-free batches (`trainer.padding_free`) and forwards under a token budget
(`trainer.max_tokens`) give the padded path's results: the same logits for every family the
table lets pack, under both heads, and the same training under both trainers; each lever acts
(no pad token reaches the encoder; a batch runs as several forwards) and one that cannot apply
is one line before any weights load."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from src.config.errors import UserError
from src.data.collate import Collator, PackedCollator
from src.models import encoders
from src.models.custom_head import CustomHeadClassifier
from src.models.packed import PackedModel
from src.trainers.build import build
from src.trainers.common import token_budget
from src.trainers.loggers import NullLogger
from tests.conftest import SMOKE, compose, tokenizer_of

TEXTS = [
    "a film",
    "a long and rather slow film about a river and a town, told twice",
    "bad",
    "the best film of the year, and the longest one too",
    "fine",
]
PACKING = [t for t, e in encoders.ENCODERS.items() if e.varlen]
NO_DROPOUT = ("dropout=0", "backbone.hidden_dropout=0", "backbone.attention_dropout=0")


def _examples(folder, with_labels=True):
    tokenizer = tokenizer_of(folder)
    examples = [dict(tokenizer(t)) for t in TEXTS]
    if not encoders.takes_token_types(json.loads((folder / "config.json").read_text())):
        examples = [{k: v for k, v in e.items() if k != "token_type_ids"} for e in examples]
    return [{**e, "labels": i % 2} for i, e in enumerate(examples)], tokenizer


def test_the_families_that_pack_are_all_but_debertas():
    assert sorted(set(encoders.ENCODERS) - set(PACKING)) == ["deberta", "deberta-v2"]


@pytest.mark.parametrize("model_type", PACKING)
def test_packed_logits_and_loss_equal_the_padded_batchs(encoder_folder, model_type):
    """Texts of 3 to 17 word pieces: the packed row through both heads (the custom head
    pooling [CLS] and the mean) gives the padded batch's logits and loss; the encoder is
    given one row with no pad token in it."""
    folder = encoder_folder(model_type)
    examples, tokenizer = _examples(folder)
    padded, packed = Collator(tokenizer)(examples), PackedCollator()(examples)
    lengths = [len(e["input_ids"]) for e in examples]
    assert packed["input_ids"].shape == (1, sum(lengths))
    assert tokenizer.pad_token_id not in packed["input_ids"].tolist()[0]
    assert padded["input_ids"].numel() > sum(lengths)  # the padded batch does pad
    for head in ("hf", "cls", "mean"):
        torch.manual_seed(0)
        if head == "hf":
            model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
        else:
            model = CustomHeadClassifier(AutoModel.from_pretrained(folder), 2, 0.1, head)
        model.eval()
        with torch.no_grad():
            want = model(**padded)
            got = PackedModel(model).eval()(**packed)
            again = model(**padded)  # the model itself still runs padded batches
        torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(got.loss, want.loss, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(again.logits, want.logits, atol=1e-5, rtol=1e-4)


def test_packed_gradients_equal_the_padded_batchs(encoder_folder):
    """Training mode without dropout: the packed row's loss has the padded batch's gradient."""
    folder = encoder_folder("bert")
    examples, tokenizer = _examples(folder)
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    model.train()
    model(**Collator(tokenizer)(examples)).loss.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    PackedModel(model).train()(**PackedCollator()(examples)).loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[name], atol=1e-6, rtol=1e-4, msg=name)


def test_the_packed_collator_keeps_examples_apart():
    examples = [
        {"input_ids": [101, 7, 102], "attention_mask": [1] * 3, "labels": 1, "doc": 0},
        {"input_ids": [101, 102], "attention_mask": [1] * 2, "labels": 0, "doc": 1},
    ]
    batch = PackedCollator()(examples)
    assert batch["input_ids"].tolist() == [[101, 7, 102, 101, 102]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["cu_seq_lens"].tolist() == [0, 3, 5] and batch["max_length"] == 3
    assert batch["padded_index"].tolist() == [0, 1, 2, 3, 4]  # rows of width 3: 0-2, 3-4
    assert batch["attention_mask"].tolist() == [[True] * 3, [True, True, False]]
    assert batch["labels"].tolist() == [1, 0] and "doc" not in batch
    # multi-hot rows and values: the padded batch's labels, dtype and all
    tokenizer = tokenizer_of()
    for labels in ([np.array([1, 0, 1], "float32"), np.array([0, 1, 0], "float32")], [0.5, 1.5]):
        rows = [{**e, "labels": y} for e, y in zip(examples, labels, strict=True)]
        packed, padded = PackedCollator()(rows)["labels"], Collator(tokenizer)(rows)["labels"]
        assert packed.dtype == padded.dtype and torch.equal(packed, padded)


def test_token_budget_parts():
    lengths = [10, 3, 8, 2, 5]
    # padded: examples x the longest; packed: the sum
    assert token_budget([0, 1, 2, 3, 4], lengths, 16, packed=False) == [[0], [2, 4], [1, 3]]
    assert token_budget([0, 1, 2, 3, 4], lengths, 16, packed=True) == [[0], [2, 4, 1], [3]]
    assert token_budget([0, 1], lengths, 100, packed=False) == [[0, 1]]


@pytest.fixture(scope="module")
def short_texts(tmp_path_factory):
    """64 texts of 3 to 31 words, labelled by a word they hold: lengths that pad."""
    rng = random.Random(0)
    words = [
        "film",
        "plot",
        "actor",
        "scene",
        "music",
        "story",
        "script",
        "camera",
        "light",
        "river",
        "town",
        "night",
    ]
    rows = []
    for i in range(64):
        label = "pos" if i % 2 else "neg"
        text = [rng.choice(words) for _ in range(rng.randint(2, 30))]
        text.insert(rng.randrange(len(text) + 1), "great" if label == "pos" else "dull")
        rows.append((" ".join(text), label))
    path = tmp_path_factory.mktemp("short") / "short.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return path


def _overrides(short_texts, *more):
    return (
        SMOKE,
        "dataset=files",
        f"dataset.train_file={short_texts}",
        "dataset.max_train_samples=null",
        "dataset.max_eval_samples=null",
        *NO_DROPOUT,
        *more,
    )


CACHED = ("backbone.freeze_layers=1", "backbone.cache_frozen=true")


@pytest.mark.parametrize(
    ("model", "trainer", "more"),
    [("hf_head", "hf", ()), ("custom_head", "manual", ()), ("custom_head", "hf", CACHED)],
)
def test_a_padding_free_run_trains_as_the_padded_one(trained, short_texts, model, trainer, more):
    """Both trainers, both heads, the frozen cache: the same epoch loss, metrics and test
    probabilities, packed or padded."""
    pair = (f"model={model}", f"trainer={trainer}", *more)
    runs = [
        trained(*_overrides(short_texts, *pair, f"trainer.padding_free={flag}"))
        for flag in ("false", "true")
    ]
    padded, packed = (json.loads((r / "metrics.json").read_text()) for r in runs)
    for a, b in zip(padded["history"], packed["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["accuracy"] == b["accuracy"]
    assert padded["test"] == pytest.approx(packed["test"], rel=1e-6)
    probs = [
        [float(row["p_pos"]) for row in csv.DictReader((r / "test_predictions.csv").open())]
        for r in runs
    ]
    assert probs[0] == pytest.approx(probs[1], abs=1e-4)


def test_max_tokens_splits_a_batch_and_keeps_its_step(short_texts):
    """trainer.max_tokens=48 with batches of 8: each batch runs as several forwards, none
    over the budget, and training ends on the weights of one forward per batch."""
    runs = {}
    for budget in ("null", "48"):
        cfg = compose(
            list(_overrides(short_texts, "trainer=manual", f"trainer.max_tokens={budget}"))
        )
        built = build(cfg, NullLogger())
        sizes: list[tuple[int, int]] = []

        def seen(module, args, kwargs, sizes=sizes):
            if module.training:
                sizes.append(tuple(kwargs["input_ids"].shape))

        built.model.register_forward_pre_hook(seen, with_kwargs=True)
        built.fit(built_dir := (short_texts.parent / f"mt-{budget}"))
        assert built_dir.is_dir()
        runs[budget] = (sizes, {k: v.clone() for k, v in built.model.state_dict().items()})
    whole, parts = runs["null"][0], runs["48"][0]
    assert all(rows == 8 for rows, _ in whole[:-1])
    assert len(parts) > len(whole) and all(rows * width <= 48 for rows, width in parts)
    for name, weight in runs["null"][1].items():
        torch.testing.assert_close(runs["48"][1][name], weight, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (("trainer=hf", "trainer.max_tokens=4096"), "trainer.max_tokens=4096: transformers'"),
        (("trainer.max_tokens=32",), "trainer.max_tokens=32: below max_length=64"),
    ],
)
def test_a_token_budget_that_cannot_apply_is_one_line(overrides, says):
    from tests.conftest import first_error

    assert first_error(SMOKE, *overrides).startswith(f"error: {says}")


def test_a_family_that_cannot_pack_is_one_line_before_weights_load(encoder_folder):
    config = json.loads((encoder_folder("deberta-v2") / "config.json").read_text())
    with pytest.raises(UserError, match=r"^trainer.padding_free=true: DeBERTa-v2/v3 .*=false$"):
        encoders.check_levers(config, {"name": "d"}, None, padding_free=True)
    bert = json.loads((encoder_folder("bert") / "config.json").read_text())
    cached = {"name": "b", "freeze_layers": 1, "cache_frozen": True}
    encoders.check_levers(bert, cached, None, padding_free=True)  # BERT packs, cached too


@pytest.mark.parametrize("model_type", ["bert", "roberta", "electra", "modernbert"])
def test_packed_batches_read_the_frozen_cache(encoder_folder, model_type):
    """backbone.cache_frozen with padding-free batches: the lower layer runs once per example,
    packed, its rows are stored unpadded and read back end to end, and the logits are the
    padded batch's through every layer (the families with a position offset, a projection
    after the embeddings, a final norm and rotary positions)."""
    from src.models.frozen import FrozenCache, freeze

    folder = encoder_folder(model_type)
    examples, tokenizer = _examples(folder)
    examples = [{**e, "cache_row": i} for i, e in enumerate(examples)]
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2).eval()
    freeze(model, 1)
    padded = Collator(tokenizer)(examples)
    padded.pop("cache_rows")
    cache = FrozenCache(model, 1, [len(e["input_ids"]) for e in examples], torch.float32)
    net = PackedModel(model, cache).eval()
    calls = []
    cache.lower.register_forward_pre_hook(lambda m, a: calls.append(1))
    with torch.no_grad():
        want = model(**padded)
        first = net(**PackedCollator()(examples))
        again = net(**PackedCollator()(examples[1:]))  # other batching: the stored rows
    assert cache.filled.all() and len(calls) == 1
    torch.testing.assert_close(first.logits, want.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(again.logits, want.logits[1:], atol=1e-5, rtol=1e-4)


def test_fused_adamw_and_sdpa_are_what_the_run_builds():
    """optimizer.fused reaches torch's AdamW: null is fused on the CPU and torch's default on
    a GPU, false the per-parameter loop; the encoder's attention is PyTorch's SDPA unless
    padding-free batches make it "varlen"."""
    from src.trainers.optim import AdamW

    plain = build(compose([SMOKE]), NullLogger())
    assert plain.optimizer.defaults["fused"] is True  # the CPU's default
    assert plain.model.config._attn_implementation == "sdpa" and plain.packed is None
    kwargs = {"fused": None, "lr": 1e-3}
    assert AdamW(lr=1e-3).resolve(kwargs, "cuda") == kwargs  # torch's own choice there
    looped = build(compose([SMOKE, "optimizer.fused=false"]), NullLogger())
    assert looped.optimizer.defaults["fused"] is False
    fused = build(
        compose([SMOKE, "optimizer.fused=true", "trainer.padding_free=true"]), NullLogger()
    )
    assert fused.optimizer.defaults["fused"] is True
    assert fused.model.config._attn_implementation == "varlen"
    assert isinstance(fused.trained, PackedModel) and isinstance(fused.collator, PackedCollator)
