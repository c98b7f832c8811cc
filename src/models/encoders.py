"""What the levers need to know of each encoder architecture, in one table keyed by
`config.model_type` (as transformers' auto mappings and peft's target-module mapping are).

Every lever asks this table and never an attribute path of BERT's: freezing and caching (where
the layers are, what runs before layer 0), LoRA (which Linear layers get adapters), the dropout
knobs (the config keys that hold each dropout), the `max_length` limit (the position offset)
and the segment ids (whether the encoder reads token_type_ids). A `model_type` not in the table
trains with every layer (both heads, both trainers); a lever that needs the table says so in one
line, before any weights load, naming the lever and the fix; a dropout knob it cannot place
(`levers_left`) leaves the encoder's own dropout, said in one line, and the run goes on.

    python -m src.models.encoders          # the families and what each supports

Imports no torch: the config checks read it (src.config.knobs); the levers pass their models in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from src.config.errors import UserError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Encoder:
    """One architecture's facts. Module paths are dotted, from the base model (`base_model`:
    BertModel, DistilBertModel, ...); one that a checkpoint lacks is skipped (ELECTRA's
    projection exists only where embedding_size != hidden_size)."""

    family: str
    layers: str  # the nn.ModuleList of layers, in order
    before: tuple[str, ...]  # what runs before layer 0 and is frozen with the embeddings
    lora_targets: tuple[str, ...]  # every Linear inside the layers (attention and feed-forward)
    hidden_dropout: tuple[str, ...]  # the config keys backbone.hidden_dropout sets
    attention_dropout: tuple[str, ...]  # ... backbone.attention_dropout sets
    head_dropout: tuple[str, ...]  # ... model=hf_head's dropout sets (its classifier's)
    layer_count: str = "num_hidden_layers"  # the config.json key of the number of layers
    token_types: bool = True  # reads token_type_ids (where type_vocab_size > 1)
    position_offset: bool = False  # positions start after pad_token_id (RoBERTa: 514 - 2)
    shared_layers: bool = False  # one layer's weights at every depth (ALBERT)
    with_first_layer: tuple[str, ...] = ()  # modules applied with layer 0 (DeBERTa-v2's conv)
    # the frozen cache's call path (src.models.frozen): what its stored rows stand in for on
    # the way to the first upper layer (the embeddings; ELECTRA's projection after them), and
    # what runs after the last layer, which the stored rows must not have seen (ModernBERT's
    # final norm)
    inputs: tuple[str, ...] = ("embeddings",)
    after: tuple[str, ...] = ()
    # trainer.padding_free (src.models.packed): attention through transformers'
    # AttentionInterface, so a packed row's examples can be kept apart (DeBERTa's own
    # disentangled attention cannot); `stack`: the module whose loop runs the layers, which the
    # head's view passes hidden states straight through where emptying the layer list cannot
    # (ALBERT loops over its shared group num_hidden_layers times)
    varlen: bool = True
    stack: str = ""


_BERT = dict(
    layers="encoder.layer",
    before=("embeddings",),
    lora_targets=("query", "key", "value", "dense"),
    hidden_dropout=("hidden_dropout_prob",),
    attention_dropout=("attention_probs_dropout_prob",),
    head_dropout=("classifier_dropout",),
)
_ROBERTA = {**_BERT, "family": "RoBERTa", "position_offset": True}
_DEBERTA = {
    **_BERT,
    "before": ("embeddings", "encoder.rel_embeddings", "encoder.LayerNorm"),
    "head_dropout": ("cls_dropout", "pooler_dropout"),
}

ENCODERS: dict[str, Encoder] = {
    "bert": Encoder(family="BERT", **_BERT),
    "roberta": Encoder(**_ROBERTA),
    "xlm-roberta": Encoder(**{**_ROBERTA, "family": "XLM-RoBERTa"}),
    "camembert": Encoder(**{**_ROBERTA, "family": "CamemBERT"}),
    "electra": Encoder(
        **{
            **_BERT,
            "family": "ELECTRA",
            "before": ("embeddings", "embeddings_project"),
            "inputs": ("embeddings", "embeddings_project"),
        }
    ),
    "distilbert": Encoder(
        family="DistilBERT",
        layers="transformer.layer",
        before=("embeddings",),
        lora_targets=("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
        hidden_dropout=("dropout",),
        attention_dropout=("attention_dropout",),
        head_dropout=("seq_classif_dropout",),
        layer_count="n_layers",
        token_types=False,
    ),
    "deberta-v2": Encoder(
        **{
            **_DEBERTA,
            "family": "DeBERTa-v2/v3",
            "lora_targets": ("query_proj", "key_proj", "value_proj", "dense"),
            "with_first_layer": ("encoder.conv",),
            "varlen": False,
        }
    ),
    "deberta": Encoder(
        **{
            **_DEBERTA,
            "family": "DeBERTa",
            "before": ("embeddings", "encoder.rel_embeddings"),
            "lora_targets": ("in_proj", "dense"),
            "varlen": False,
        }
    ),
    "albert": Encoder(
        family="ALBERT",
        layers="encoder.albert_layer_groups",
        before=("embeddings", "encoder.embedding_hidden_mapping_in"),
        lora_targets=("query", "key", "value", "dense", "ffn", "ffn_output"),
        hidden_dropout=("hidden_dropout_prob",),
        attention_dropout=("attention_probs_dropout_prob",),
        head_dropout=("classifier_dropout_prob",),
        shared_layers=True,
        stack="encoder",
    ),
    "modernbert": Encoder(
        family="ModernBERT",
        layers="layers",
        before=("embeddings",),
        lora_targets=("Wqkv", "Wo", "Wi"),
        hidden_dropout=("embedding_dropout", "mlp_dropout"),
        attention_dropout=("attention_dropout",),
        head_dropout=("classifier_dropout",),
        token_types=False,
        after=("final_norm",),
    ),
}


def known(model_type: str | None) -> Encoder | None:
    return ENCODERS.get(model_type or "")


def _unknown(lever: str, model_type: str | None, fix: str) -> UserError:
    return UserError(
        f"{lever}: src/models/encoders.py does not know model_type '{model_type}' (known: "
        f"{', '.join(ENCODERS)}); {fix}"
    )


# --- the config checks: a model's config.json as a mapping, before any weights load --------


def layer_count(config: Mapping[str, Any]) -> int | None:
    encoder = known(config.get("model_type"))
    key = encoder.layer_count if encoder else "num_hidden_layers"
    value = config.get(key)
    return value if isinstance(value, int) else None


def position_limit(config: Mapping[str, Any]) -> int | None:
    """The longest input the positions allow: max_position_embeddings, less RoBERTa's offset
    (its positions start at pad_token_id + 1, so roberta-base's 514 allow 512)."""
    limit = config.get("max_position_embeddings")
    if not isinstance(limit, int):
        return None
    encoder = known(config.get("model_type"))
    if encoder and encoder.position_offset:
        limit -= int(config.get("pad_token_id") or 0) + 1
    return limit


def takes_token_types(config: Mapping[str, Any]) -> bool | None:
    """Whether segment ids reach the encoder: the family reads them and has more than one
    (roberta-base and DeBERTa-v3 have 1 and 0). None: unknown, the tokenizer decides."""
    encoder = known(config.get("model_type"))
    if encoder is None:
        return None
    return encoder.token_types and int(config.get("type_vocab_size") or 0) > 1


_BERT_DROPOUTS = (_BERT["hidden_dropout"], _BERT["attention_dropout"])


def _dropout_keys(config: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The config keys of the hidden and the attention dropout: the family's; for an encoder
    the table does not know, BERT's where its config.json has them (MPNet's), else none."""
    encoder = known(config.get("model_type"))
    if encoder is not None:
        return encoder.hidden_dropout, encoder.attention_dropout
    hidden, attention = (tuple(k for k in keys if k in config) for keys in _BERT_DROPOUTS)
    return hidden, attention


def dropout_overrides(
    config: Mapping[str, Any], hidden: float | None, attention: float | None
) -> dict[str, float]:
    """The config keys backbone.hidden_dropout and backbone.attention_dropout set (none for
    a knob whose keys this encoder lacks: `levers_left`)."""
    hidden_keys, attention_keys = _dropout_keys(config)
    out = {k: hidden for k in hidden_keys if hidden is not None}
    return {**out, **{k: attention for k in attention_keys if attention is not None}}


def levers_left(
    config: Mapping[str, Any], backbone: Mapping[str, Any], hf_head: bool = False
) -> list[str]:
    """The dropout knobs this encoder keeps its own value of, one line each (not refused: an
    encoder src/models/encoders.py does not know trains with its own dropout): a backbone knob whose
    keys its config.json lacks; model=hf_head's dropout on a family whose head is unknown."""
    model_type, lines = config.get("model_type"), []
    unknown = f"src/models/encoders.py does not know model_type '{model_type}'"
    knobs = ("hidden_dropout", "attention_dropout")
    for key, keys, bert in zip(knobs, _dropout_keys(config), _BERT_DROPOUTS, strict=True):
        value = backbone.get(key)
        if value is not None and not keys:
            lines.append(
                f"backbone.{key}={value} is not applied: {unknown} and its config.json has no "
                f"{bert[0]}; the encoder keeps its own dropout (set it by its config.json key in "
                "backbone.config_overrides)"
            )
    if hf_head and known(model_type) is None:
        lines.append(
            f"model=hf_head's dropout is set as config.json's classifier_dropout: {unknown}, "
            "and its classification head may read another key (backbone.config_overrides "
            "sets any)"
        )
    return lines


def head_dropout_keys(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The config keys of model=hf_head's classifier dropout (`classifier_dropout` where the
    family is unknown: transformers' common name)."""
    encoder = known(config.get("model_type"))
    return encoder.head_dropout if encoder else ("classifier_dropout",)


def lora_targets(model_type: str | None, target_modules: Any) -> list[str]:
    """model.lora.target_modules, or the family's (null: every Linear in its layers)."""
    if target_modules:
        return list(target_modules)
    encoder = known(model_type)
    if encoder is None:
        raise _unknown(
            "model.lora.target_modules=null",
            model_type,
            "list the encoder's Linear layers in model.lora.target_modules",
        )
    return list(encoder.lora_targets)


def check_levers(
    config: Mapping[str, Any],
    backbone: Mapping[str, Any],
    lora: Mapping[str, Any] | None = None,
    padding_free: bool = False,
) -> None:
    """Each lever the config asks for applies to this encoder, or one line says why not."""
    model_type, n = config.get("model_type"), backbone.get("freeze_layers", 0) or 0
    encoder, name = known(model_type), backbone.get("name")
    if lora is not None:
        lora_targets(model_type, lora.get("target_modules"))
    if padding_free and encoder is None:
        raise _unknown("trainer.padding_free=true", model_type, "set trainer.padding_free=false")
    if padding_free and not encoder.varlen:
        raise UserError(
            f"trainer.padding_free=true: {encoder.family} (model_type {model_type}) computes its "
            "attention itself, outside transformers' attention interface, so a packed row's "
            "examples cannot be kept apart; set trainer.padding_free=false"
        )
    if not n:
        return
    cache = " backbone.cache_frozen=false" if backbone.get("cache_frozen") else ""
    if encoder is None:
        raise _unknown(
            f"backbone.freeze_layers={n}", model_type, f"set backbone.freeze_layers=0{cache}"
        )
    if encoder.shared_layers:
        raise UserError(
            f"backbone.freeze_layers={n}: {encoder.family} (model_type {model_type}) shares one "
            f"layer's weights across all its layers, so freezing the lower {n} would freeze them "
            f"all; set backbone.freeze_layers=0{cache} (model.peft=lora trains a few weights)"
        )
    layers = layer_count(config)
    if layers is not None and n > layers:
        raise UserError(
            f"backbone.freeze_layers={n}: backbone {name} has {layers} encoder layers; use 0 to "
            f"{layers}"
        )
    if backbone.get("cache_frozen") and int(config.get("conv_kernel_size") or 0) > 0:
        raise UserError(
            f"backbone.cache_frozen=true: {encoder.family} with conv_kernel_size "
            f"{config['conv_kernel_size']} mixes the embeddings into layer 0's output, which a "
            "cached row cannot give back; set backbone.cache_frozen=false (freezing still works)"
        )


# --- the levers' view of a built model -----------------------------------------------------


def of(model: nn.Module) -> Encoder:
    """The table's entry for a model of either head (its encoder's config.model_type)."""
    model_type = model.config.model_type
    encoder = known(model_type)
    if encoder is None:
        raise _unknown("backbone.freeze_layers", model_type, "set backbone.freeze_layers=0")
    return encoder


def layer_list(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """The encoder (`base_model`), the path of its layer list, and the list."""
    base, path = model.base_model, of(model).layers
    return base, path, base.get_submodule(path)


def set_layers(base: nn.Module, path: str, layers: nn.ModuleList) -> None:
    parent, _, name = path.rpartition(".")
    setattr(base.get_submodule(parent) if parent else base, name, layers)


def before_layers(model: nn.Module, n: int) -> list[nn.Module]:
    """What freezing the lower `n` layers freezes besides them: the embeddings and whatever
    else runs before layer 0 (ELECTRA's projection, DeBERTa's relative embeddings), and with
    layer 0 what only it uses (DeBERTa-v2's conv)."""
    encoder, base = of(model), model.base_model
    paths = encoder.before + (encoder.with_first_layer if n else ())
    return [base.get_submodule(p) for p in paths if _has(base, p)]


def _has(module: nn.Module, path: str) -> bool:
    try:
        return module.get_submodule(path) is not None
    except AttributeError:
        return False


# --- a random encoder of any family, saved to a folder (tests, benchmarks, trying offline) --

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
}
BASE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
}
# Each family's own keys, and its base checkpoint's shape where it is not BERT-base's.
_SHAPES: dict[str, dict[str, dict[str, Any]]] = {
    "roberta": {"all": {"type_vocab_size": 1}, "base": {"max_position_embeddings": 514}},
    "xlm-roberta": {"all": {"type_vocab_size": 1}, "base": {"max_position_embeddings": 514}},
    "distilbert": {"base": {"num_hidden_layers": 6}},
    "deberta-v2": {
        "all": {
            "relative_attention": True,
            "position_biased_input": False,
            "pos_att_type": ["p2c", "c2p"],
            "norm_rel_ebd": "layer_norm",
            "share_att_key": True,
            "max_relative_positions": -1,
            "type_vocab_size": 0,
        },
        "tiny": {"position_buckets": 16},
        "base": {"position_buckets": 256},
    },
    "electra": {"tiny": {"embedding_size": 16}},
    "albert": {"tiny": {"embedding_size": 16}, "base": {"embedding_size": 128}},
    "modernbert": {
        "all": {"global_attn_every_n_layers": 3, "local_attention": 128},
        "tiny": {"local_attention": 8, "global_attn_every_n_layers": 2},
        "base": {
            "num_hidden_layers": 22,
            "intermediate_size": 1152,
            "max_position_embeddings": 8192,
        },
    },
}
_DISTILBERT_KEYS = {
    "hidden_size": "dim",
    "num_hidden_layers": "n_layers",
    "num_attention_heads": "n_heads",
    "intermediate_size": "hidden_dim",
}


def random_encoder(
    folder: str | Path, model_type: str, tokenizer: str | Path, size: str = "tiny", **extra: Any
) -> Path:
    """A randomly initialised encoder of `model_type` (`tiny`: 2 layers of 32; `base`: the
    family's base checkpoint's shape) with `tokenizer` (a folder: tests and benchmarks use the
    embedded WordPiece one, whatever the family), saved to `folder`
    as a checkpoint folder (`backbone.path=<folder>`). Weights are saved only for `tiny`; a
    `base` folder holds config.json and the tokenizer, for `backbone.init=random`."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = Path(folder)
    tok = AutoTokenizer.from_pretrained(str(tokenizer))
    shapes = _SHAPES.get(model_type, {})
    shape = {
        **(TINY if size == "tiny" else BASE),
        **shapes.get("all", {}),
        **shapes.get(size, {}),
        **extra,
    }
    if model_type == "distilbert":
        shape = {_DISTILBERT_KEYS.get(k, k): v for k, v in shape.items()}
    ids = {
        "vocab_size": tok.vocab_size,
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.cls_token_id,
        "eos_token_id": tok.sep_token_id,
        "cls_token_id": tok.cls_token_id,
        "sep_token_id": tok.sep_token_id,
    }
    config = AutoConfig.for_model(model_type, **ids, **shape)
    if size == "tiny":
        AutoModel.from_config(config).save_pretrained(folder)
    else:
        config.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def table() -> str:
    """The families and what each supports, as Markdown (the README's backbone table)."""
    columns = ("model_type", "family", "freeze + cache", "LoRA targets (null)", "segment ids")
    rows = [f"| {' | '.join(columns)} | padding-free |", "|---|---|---|---|---|---|"]
    for model_type, e in ENCODERS.items():
        freeze = "refused: shared layers" if e.shared_layers else f"`{e.layers}`"
        types = "where type_vocab_size > 1" if e.token_types else "never"
        packs = "yes" if e.varlen else "refused: its own attention"
        targets = ", ".join(e.lora_targets)
        rows.append(f"| {model_type} | {e.family} | {freeze} | {targets} | {types} | {packs} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
