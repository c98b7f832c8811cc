"""Every family of src.models.encoders with every lever, on tiny random checkpoints of each
model_type
(tests/conftest.py `encoder_folder`): frozen layers are frozen and their cache is read once per
example under both trainers and gives the uncached run's predictions; LoRA finds its targets;
the dropout knobs reach the family's keys; segment ids reach only encoders that read them; the
position limit counts RoBERTa's offset; a saved run predicts through `src.predict`,
`src.evaluate` and `pipeline()`; a lever that cannot apply is one line before weights load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from src.config.errors import UserError
from src.models import encoders
from src.trainers.build import build
from src.trainers.loggers import NullLogger
from tests.conftest import FAMILIES, compose, first_error, tokenizer_of

CACHE = ("backbone.freeze_layers=1", "backbone.cache_frozen=true")
FREEZE = ("backbone.freeze_layers=1", "backbone.cache_frozen=false")
# every family that has layers to freeze (ALBERT shares one layer's weights: refused below)
LAYERED = [f for f in FAMILIES if not encoders.known(f).shared_layers]


def small(folder, *more: str) -> list[str]:
    """The default recipe's levers (chunks, custom_head with mean pooling, the manual loop) on
    a few reviews, cut into windows of 96 word pieces, over two epochs."""
    return [
        "debug=smoke",
        f"backbone.path={folder}",
        "truncation=chunks",
        "max_length=96",
        "dataset.max_train_samples=8",
        "dataset.max_eval_samples=4",
        "epochs=2",
        "tokenize_cache=null",
        *more,
    ]


def fit_counting(overrides: list[str], run_dir) -> tuple[np.ndarray, int, int]:
    """Train, then predict the test split; returns its logits, the examples that went through
    layer 0 (a frozen one) in all, and the examples of every split."""
    built = build(compose(overrides), NullLogger())
    base = built.model.base_model
    known = encoders.known(built.model.config.model_type)
    layers = encoders.layer_list(built.model)[2] if known else base.encoder.layer  # mpnet's
    rows: list[int] = []

    def count(layer, args, kwargs):
        first = next(t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor))
        rows.append(first.shape[0])

    handle = layers[0].register_forward_pre_hook(count, with_kwargs=True)
    built.fit(run_dir)
    logits = built.logits("eval"), built.logits("test")
    handle.remove()
    return np.concatenate(logits), sum(rows), sum(len(e) for e in built.encoded.values())


@pytest.mark.parametrize("family", LAYERED)
def test_the_cache_is_read_once_per_example_and_changes_no_prediction(
    family, encoder_folder, tmp_path
):
    """Same seed, fp32: the cached run's predictions are the uncached run's, and its frozen
    layer ran once per example (train, eval and test windows), not once per step."""
    folder = encoder_folder(family)
    cached, cached_rows, examples = fit_counting(small(folder, *CACHE), tmp_path / "c")
    plain, plain_rows, _ = fit_counting(small(folder, *FREEZE), tmp_path / "p")
    assert cached_rows == examples
    assert plain_rows >= 1.5 * examples  # epoch 2 runs the train and eval windows again
    np.testing.assert_allclose(cached, plain, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", LAYERED)
def test_trainer_hf_reads_the_cache(family, encoder_folder, tmp_path):
    """transformers' Trainer keeps each example's cache row (its column filter dropped it)."""
    folder = encoder_folder(family)
    _, rows, examples = fit_counting(small(folder, *CACHE, "trainer=hf", "model=hf_head"), tmp_path)
    assert rows == examples


@pytest.mark.parametrize("family", LAYERED)
@pytest.mark.parametrize("model", ["hf_head", "custom_head"])
def test_freezing_freezes_what_runs_before_layer_0(family, model, encoder_folder):
    """No gradient in the embeddings, in what the family runs before layer 0 (ELECTRA's
    projection, DeBERTa's relative embeddings) and in layer 0; the rest trains; the frozen part
    runs in eval mode while the model trains."""
    built = build(compose(small(encoder_folder(family), *FREEZE, f"model={model}")), NullLogger())
    net, entry = built.model.train(), encoders.known(family)
    base, _, layers = encoders.layer_list(net)
    frozen = [*encoders.before_layers(net, 1), layers[0]]
    assert len(frozen) >= len([p for p in entry.before if _has(base, p)]) + 1
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in layers[1].parameters())
    in_optimizer = {id(p) for g in built.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in net.parameters() if p.requires_grad}
    ids = torch.tensor([[101, 2023, 3185, 102]])
    net(input_ids=ids, attention_mask=torch.ones_like(ids))
    ran = (base.get_submodule(entry.before[0]), layers[0])  # DeBERTa reads rel_embeddings' weight
    assert not any(m.training for f in ran for m in f.modules()) and layers[1].training
    if family == "electra":  # embedding_size 16 != hidden 32: the projection is frozen too
        assert any(m is base.embeddings_project for m in frozen)


def _has(base, path: str) -> bool:
    try:
        base.get_submodule(path)
    except AttributeError:
        return False
    return True


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_targets_every_linear_of_the_layers(family, encoder_folder):
    """model.lora.target_modules=null: the family's Linear layers get adapters, and only the
    adapters and the head train."""
    built = build(
        compose(
            small(
                encoder_folder(family),
                "backbone.freeze_layers=0",
                "backbone.cache_frozen=false",
                "model.peft=lora",
            )
        ),
        NullLogger(),
    )
    names = [n for n, p in built.model.named_parameters() if p.requires_grad]
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names if ".lora_" in n}
    assert adapted == set(encoders.known(family).lora_targets)
    assert all(".lora_" in n or n.startswith(("classifier", "dropout")) for n in names)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_dropout_knobs_reach_the_familys_keys(family, encoder_folder):
    """dropout (hf_head's classifier), backbone.hidden_dropout and backbone.attention_dropout
    land in the config keys this family reads, and every Dropout of the head takes `dropout`."""
    knobs = (
        "model=hf_head",
        "dropout=0.3",
        "backbone.hidden_dropout=0.25",
        "backbone.attention_dropout=0.2",
        "backbone.freeze_layers=0",
        "backbone.cache_frozen=false",
    )
    model = build(compose(small(encoder_folder(family), *knobs)), NullLogger()).model
    entry, config = encoders.known(family), model.config
    assert all(getattr(config, k) == 0.3 for k in entry.head_dropout)
    assert all(getattr(config, k) == 0.25 for k in entry.hidden_dropout)
    assert all(getattr(config, k) == 0.2 for k in entry.attention_dropout)
    base = {id(m) for m in model.base_model.modules()}
    head = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout) and id(m) not in base]
    assert head and set(head) == {0.3}
    assert 0.25 in {m.p for m in model.base_model.modules() if isinstance(m, torch.nn.Dropout)}


@pytest.mark.parametrize("family", FAMILIES)
def test_segment_ids_only_where_the_encoder_reads_them(family, encoder_folder, tmp_path):
    """RoBERTa (1 type), DeBERTa-v3 (0), DistilBERT and ModernBERT get no token_type_ids, also
    from the tokenizer saved with the model (pipeline() and src.predict load that one)."""
    tokenizer = tokenizer_of(str(encoder_folder(family)))
    expected = family in ("bert", "electra", "albert")
    assert ("token_type_ids" in tokenizer("a", "b")) == expected
    tokenizer.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    assert ("token_type_ids" in AutoTokenizer.from_pretrained(tmp_path)("a", "b")) == expected


def test_position_limits_count_robertas_offset(encoder_folder):
    """roberta-base's 514 positions allow 512 word pieces (they start after pad_token_id 1)."""
    assert (
        encoders.position_limit(
            {"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}
        )
        == 512
    )
    assert encoders.position_limit({"model_type": "bert", "max_position_embeddings": 512}) == 512
    roberta = encoder_folder("roberta")  # 128 positions, pad_token_id 0 (the tokenizer's)
    assert first_error(*small(roberta, "max_length=127")) == ""
    assert first_error(*small(roberta, "max_length=128")).startswith(
        "error: max_length=128: an integer from 3 to 127"
    )


@pytest.mark.parametrize(
    ("family", "args", "line"),
    [
        (
            "albert",
            CACHE,
            "backbone.freeze_layers=1: ALBERT (model_type albert) shares one "
            "layer's weights across all its layers",
        ),
        (
            "distilbert",
            ("backbone.freeze_layers=3",),
            "backbone.freeze_layers=3: backbone tiny-random-bert has 2 encoder layers; use 0 to 2",
        ),
        (
            "mpnet",
            CACHE,
            "backbone.freeze_layers=1: src/models/encoders.py does not know model_type 'mpnet'",
        ),
        (
            "mpnet",
            ("backbone.freeze_layers=0", "model.peft=lora"),
            "model.lora.target_modules="
            "null: src/models/encoders.py does not know model_type 'mpnet'",
        ),
    ],
)
def test_a_lever_that_cannot_apply_is_one_line_at_validation(family, args, line, encoder_folder):
    assert first_error(
        *small(encoder_folder(family), "backbone.cache_frozen=false", *args)
    ).startswith(f"error: {line}")


def test_an_unknown_encoder_takes_berts_dropout_keys_or_keeps_its_own(encoder_folder):
    """The default config (its attention_dropout=0.0) on MPNet, which src/models/encoders.py does
    not know: not refused; its BERT-named keys take the knobs. An encoder without them keeps its
    own dropout, and each knob left is one line (not a refusal)."""
    from src.models.backbones import Backbone

    mpnet = encoder_folder("mpnet")
    assert (
        first_error(
            f"backbone.path={mpnet}",
            "backbone.freeze_layers=0",
            "backbone.cache_frozen=false",
            "max_length=128",
        )
        == ""
    )
    config = Backbone(
        name="m",
        path=str(mpnet),
        lr=1e-4,
        max_length=64,
        hidden_dropout=0.25,
        attention_dropout=0.0,
    ).config()
    assert (config.hidden_dropout_prob, config.attention_probs_dropout_prob) == (0.25, 0.0)
    knobs = {"hidden_dropout": 0.25, "attention_dropout": 0.0}
    assert encoders.levers_left(config.to_dict(), knobs) == []
    funnel = {"model_type": "funnel", "hidden_dropout": 0.1, "attention_dropout": 0.1}
    assert encoders.dropout_overrides(funnel, 0.25, 0.0) == {}
    left = encoders.levers_left(funnel, knobs)
    assert [line.split(" is not applied")[0] for line in left] == [
        "backbone.hidden_dropout=0.25",
        "backbone.attention_dropout=0.0",
    ]
    assert "config.json has no attention_probs_dropout_prob" in left[1]
    assert encoders.levers_left(funnel, {}, hf_head=True)[0].startswith(
        "model=hf_head's dropout is set as config.json's classifier_dropout"
    )
    assert encoders.levers_left(config.to_dict(), {}, hf_head=False) == []


def test_a_hub_id_is_checked_once_its_config_loads(monkeypatch, encoder_folder):
    """A hub id not in the cache passes validation (its config.json is not here); build checks
    the levers against its config before any weights load."""
    from src.models import backbones

    monkeypatch.setattr(backbones, "local_config", lambda backbone: None)
    overrides = small(encoder_folder("albert"), *CACHE)
    assert first_error(*overrides) == ""
    with pytest.raises(UserError, match="ALBERT .* shares one layer's weights"):
        build(compose(overrides), NullLogger())


@pytest.mark.parametrize("model", ["hf_head", "custom_head"])
def test_an_unknown_encoder_fine_tunes_fully(model, encoder_folder, tmp_path):
    """An encoder the table does not know trains with every layer, under either head."""
    overrides = small(
        encoder_folder("mpnet"),
        "backbone.freeze_layers=0",
        f"model={model}",
        "backbone.cache_frozen=false",
        "epochs=1",
    )
    logits, rows, examples = fit_counting(overrides, tmp_path)
    assert rows > examples and np.isfinite(logits).all()


def saved_run(trained, encoder_folder, family: str):
    """One saved run of the other levers (trained once a session): hf_head under trainer=hf,
    LoRA above a frozen, cached layer (LoRA alone on ALBERT), the dropout knobs."""
    levers = ("model.peft=lora",) if family == "albert" else (*CACHE, "model.peft=lora")
    return trained(
        *small(
            encoder_folder(family),
            "model=hf_head",
            "trainer=hf",
            "dropout=0.2",
            "backbone.hidden_dropout=0.0",
            "epochs=1",
            *levers,
        )
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_a_saved_run_predicts_alike_through_predict_and_pipeline(family, trained, encoder_folder):
    """best_model/ (LoRA merged) reloads alone: src.predict gives the run's test predictions,
    pipeline() loads it with its label names, and the model card names the family's base."""
    import csv

    from transformers import pipeline

    from src import data
    from src.outputs.trained import Predictor

    run = saved_run(trained, encoder_folder, family)
    rows = list(csv.DictReader((run / "test_predictions.csv").open()))
    saved = np.array([[float(r["p_neg"]), float(r["p_pos"])] for r in rows])
    predictor = Predictor.load(run, device="cpu")
    test = data.MovieReviews(max_train_samples=8, max_eval_samples=4).load().test
    assert saved.shape == (len(test.texts), 2) == (4, 2)
    np.testing.assert_allclose(predictor.probabilities(test.texts), saved, atol=1e-4)
    classify = pipeline("text-classification", model=str(run / "best_model"), device="cpu")
    scores = classify("a fine film", top_k=None)
    assert {s["label"] for s in scores} == {"neg", "pos"}
    assert (run / "best_model" / "README.md").is_file()


def test_src_evaluate_scores_a_saved_run_of_another_family(trained, encoder_folder, tmp_path):
    """src.evaluate rescores DistilBERT's run on its own test split: the run's accuracy."""
    from src.evaluate import evaluate

    run = saved_run(trained, encoder_folder, "distilbert")
    cfg = compose([f"run_dir={run}", "dataset.max_eval_samples=4"], config_name="evaluate")
    record = evaluate(cfg, tmp_path)
    run_metrics = json.loads((run / "metrics.json").read_text())
    assert record["n_test"] == run_metrics["n_test"]
    assert record["test"]["accuracy"] == pytest.approx(run_metrics["test"]["accuracy"])


def test_the_table_covers_the_families():
    for family in FAMILIES:
        assert f"| {family} |" in encoders.table()


# preset -> (model_type, lr, max_length)
PRESETS = {
    "roberta_base": ("roberta", 2e-5, 512),
    "xlm_roberta_base": ("xlm-roberta", 2e-5, 512),
    "deberta_v3_base": ("deberta-v2", 2e-5, 512),
    "distilbert_base": ("distilbert", 5e-5, 512),
    "electra_base": ("electra", 1e-4, 512),
    "modernbert_base": ("modernbert", 5e-5, 1024),
    "bert_base_uncased": ("bert", 2e-5, 512),
}


@pytest.mark.parametrize("preset", PRESETS)
def test_each_backbone_preset_sets_the_step_and_length_for_its_size(preset):
    family, lr, max_length = PRESETS[preset]
    cfg = compose([f"backbone={preset}"])
    assert (cfg.lr, cfg.max_length, cfg.optimizer.lr) == (lr, max_length, lr)
    assert first_error(f"backbone={preset}") == ""
    assert encoders.known(family) is not None


def _cached_hub_config(root, repo: str, config: dict) -> None:
    """A config.json where huggingface_hub's cache keeps a downloaded checkpoint's."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc123")
    (folder / "snapshots" / "abc123").mkdir(parents=True)
    (folder / "snapshots" / "abc123" / "config.json").write_text(json.dumps(config))


def test_a_cached_hub_checkpoint_is_checked_at_validation(tmp_path, monkeypatch):
    """A preset whose checkpoint is in the HF cache is checked before anything loads: RoBERTa's
    514 positions allow 512 word pieces, and its 12 layers bound freeze_layers."""
    import huggingface_hub.constants

    _cached_hub_config(
        tmp_path,
        "FacebookAI/roberta-base",
        {
            "model_type": "roberta",
            "max_position_embeddings": 514,
            "pad_token_id": 1,
            "num_hidden_layers": 12,
            "type_vocab_size": 1,
        },
    )
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert first_error("backbone=roberta_base") == ""
    assert first_error("backbone=roberta_base", "max_length=514").startswith(
        "error: max_length=514: an integer from 3 to 512 (the positions of backbone "
        "roberta-base allow 512)"
    )
    assert first_error("backbone=roberta_base", "backbone.freeze_layers=13").startswith(
        "error: backbone.freeze_layers=13: backbone roberta-base has 12 encoder layers"
    )


def test_a_hub_preset_offline_without_a_copy_is_one_line(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from src.trainers.build import make

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    backbone = make(compose(["backbone=deberta_v3_base"]).backbone)
    with pytest.raises(
        UserError,
        match=r"^backbone.path=microsoft/deberta-v3-base: not in the "
        r"local HF cache.*needs the network once",
    ):
        backbone.config()
