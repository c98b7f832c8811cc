"""models: a backbone plus a classification head, under one contract, and every lever that
changes which weights train (frozen layers and their cache, LoRA).

Every model takes `input_ids, attention_mask, token_type_ids=None, labels=None` and returns a
`SequenceClassifierOutput` (loss when labels are given, logits), as transformers' classifiers
do, so either model runs under either trainer. `num_labels` and `id2label` come from the data,
`problem_type` from the task (src.tasks): both heads compute transformers' loss for it.
The configs here import no torch; `build` loads the torch code in `src/models/custom_head.py`.
Where a backbone comes from (`backbones`), what each encoder family is made of (`encoders`: one
table every lever asks), the heads (here, `custom_head`), `lora`, `frozen`, padding-free
batches (`packed`) and an ONNX export called as a model (`exported`). It imports src.config
only: no data, task or trainer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from src.config.errors import UserError
from src.config.schema import Spec, param
from src.models.backbones import Backbone
from src.models.encoders import head_dropout_keys
from src.models.exported import ONNX_FILE, OnnxModel
from src.models.lora import LORA, add_lora

PEFT_METHODS = ("lora",)  # model.peft (src/models/lora.py)
TOKEN_POOLINGS = ("cls", "mean")  # how custom_head pools the encoder's tokens into one vector
# config.json's architectures entry for our head: the class name of the torch module in
# src/models/custom_head.py (which torch-free code must not import to learn it)
CUSTOM_HEAD_ARCH = "CustomHeadClassifier"


def label_maps(id2label: dict[int, str], problem_type: str | None = None) -> dict:
    """num_labels, id2label and label2id for a transformers config, from the data, and the
    task's `problem_type` (single_label_classification, multi_label_classification or
    regression: what transformers' heads compute their loss and pipelines their scores by)."""
    maps = {
        "num_labels": len(id2label),
        "id2label": {int(i): str(n) for i, n in id2label.items()},
        "label2id": {str(n): int(i) for i, n in id2label.items()},
    }
    return {**maps, "problem_type": problem_type} if problem_type else maps


@dataclass
class Head(Spec):
    """What both heads take: the classifier dropout, and LoRA adapters in the encoder."""

    dropout: float = param(
        MISSING, "the classifier dropout of either head (the dropout knob)", ge=0, lt=1
    )
    peft: str | None = param(
        None,
        "lora: LoRA adapters (model.lora) train in the frozen encoder, the head fully; "
        "best_model/ holds the merged weights",
        choices=PEFT_METHODS,
    )
    lora: Mapping[str, Any] = param(
        LORA,
        "model.peft=lora (peft's LoraConfig): r, the rank; alpha, the scale alpha / r; "
        "dropout, on the adapters' input; target_modules, null: every Linear in the family's "
        "layers (src/models/encoders.py)",
        test=lambda v: isinstance(v, Mapping),
        allowed="a mapping of LoRA keys",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_lora(self.lora)

    def build(self, backbone: Backbone, id2label: dict[int, str], problem_type: str | None = None):
        """The model, with LoRA adapters in its encoder when `peft=lora`."""
        model = self.model(backbone, id2label, problem_type)
        if self.peft == "lora":
            add_lora(model, dict(self.lora))
        return model


def check_lora(lora: Mapping[str, Any]) -> None:
    """Each LoRA key known and in range (one line naming it, as for any other key)."""
    rules = {
        "r": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
        "alpha": (lambda v: _number(v) and v > 0, "a number > 0"),
        "dropout": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
        "target_modules": (
            lambda v: (
                v is None
                or (
                    isinstance(v, Sequence)
                    and not isinstance(v, str)
                    and v
                    and all(isinstance(m, str) and m for m in v)
                )
            ),
            "null (the family's: src/models/encoders.py) or a list of module names",
        ),
    }
    for key, value in lora.items():
        if key not in rules:
            raise UserError(f"lora.{key}: not a LoRA key; use {', '.join(rules)}")
        ok, words = rules[key]
        if not ok(value):
            raise UserError(f"lora.{key}={value}: {words}")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@dataclass
class HFHead(Head):
    """AutoModelForSequenceClassification: the backbone's own classification head."""

    def model(self, backbone: Backbone, id2label: dict[int, str], problem_type: str | None):
        from transformers import AutoModelForSequenceClassification as Auto

        maps = label_maps(id2label, problem_type)
        config = backbone.config()  # the keys of this family's classifier dropout
        dropouts = dict.fromkeys(head_dropout_keys(config.to_dict()), self.dropout)
        return backbone.load(Auto, **dropouts, **maps)


@dataclass
class CustomHead(Head):
    """The notebook's head: encoder -> pooled vector -> dropout -> Xavier-uniform Linear."""

    pooling: str = param(
        "mean",
        "cls: the [CLS] vector (the notebook's); mean: every unpadded token",
        choices=TOKEN_POOLINGS,
    )

    def model(self, backbone: Backbone, id2label: dict[int, str], problem_type: str | None):
        from transformers import AutoModel

        from src.models.custom_head import CustomHeadClassifier

        encoder = backbone.load(AutoModel, **label_maps(id2label, problem_type))
        return CustomHeadClassifier(encoder, len(id2label), self.dropout, self.pooling)


def parameter_counts(model: Any) -> dict[str, int]:
    """How many parameters a model has, and how many of them train."""
    params = list(model.parameters())
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
    }


def load_trained(folder: str | Path):
    """Reload a saved best model of either head from its folder alone."""
    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        raise UserError(f"{folder}: no config.json; not a saved model folder")

    if (Path(folder) / ONNX_FILE).is_file():  # an export (python -m src.export)
        return OnnxModel(folder)
    from transformers import AutoModelForSequenceClassification as Auto

    from src.models.custom_head import CustomHeadClassifier

    custom = CUSTOM_HEAD_ARCH in json.loads(config_file.read_text()).get("architectures", [])
    return (CustomHeadClassifier if custom else Auto).from_pretrained(folder)
