"""LoRA adapters through peft (`model.peft=lora`): in the encoder of either head, not around
the whole model, so the classifier head stays an ordinary module that trains fully and is
saved with everything else (wrapping the whole model is how it gets lost: peft #310, #1070).

Training keeps the adapters separate; saving merges them into the encoder's weights
(`merge`), so `best_model/` is a plain model that `pipeline()` and `src.predict` load without
peft. `best_model/adapter/` keeps what trained, small: the adapters and the head under the
model's own parameter names (`load_adapter` puts them back on the backbone), and the LoRA
settings as peft's LoraConfig writes them (adapter_config.json).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from src.config.errors import UserError
from src.models.encoders import lora_targets

if TYPE_CHECKING:  # the model configs (src.models) read LORA, and must not load torch
    import torch
    from torch import nn

# model.lora's defaults, declared once here (Head.lora; the composed config reads them)
# target_modules null: the family's Linear layers (src.models.encoders: BERT's query, key, value,
# dense)
LORA = {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": None}

ADAPTER_DIR = "adapter"  # in best_model/: the adapters and the head that trained
ADAPTER_FILE = "adapter_model.safetensors"


def add_lora(model: nn.Module, settings: dict[str, Any]) -> nn.Module:
    """LoRA adapters on the encoder's `target_modules`; the encoder's own weights freeze, the
    head (outside the encoder) trains fully."""
    from peft import inject_adapter_in_model

    targets = {**LORA, **settings}["target_modules"]
    try:
        inject_adapter_in_model(lora_config(settings, model.config.model_type), model.base_model)
    except ValueError as e:  # no module of that name in the encoder
        first = str(e).splitlines()[0]
        raise UserError(f"model.lora.target_modules={targets}: {first}") from None
    return model


def head_names(model: nn.Module) -> list[str]:
    """The parameters outside the encoder: the head, which trains fully."""
    base = {id(p) for p in model.base_model.parameters()}
    return [name for name, p in model.named_parameters() if id(p) not in base]


def trained_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What LoRA trained: the adapters' A and B and the head, under the model's own names."""
    keep = set(head_names(model))
    return {
        name: p.detach().cpu().contiguous()
        for name, p in model.named_parameters()
        if name in keep or ".lora_" in name
    }


def merge(model: nn.Module) -> dict[str, torch.Tensor]:
    """Fold each adapter into the Linear it adapts and put the plain Linear back: the model is
    then the backbone's own architecture. Returns what trained (`trained_state`), from before."""
    from peft.tuners.lora import LoraLayer

    trained = trained_state(model)
    base = model.base_model
    for name, module in list(base.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(base.get_submodule(parent) if parent else base, child, module.get_base_layer())
    del base.peft_config
    return trained


def lora_config(settings: dict[str, Any], model_type: str | None):
    """peft's LoraConfig; target_modules null names the family's (src.models.encoders)."""
    from peft import LoraConfig

    lora = {**LORA, **settings}
    targets = lora_targets(model_type, lora["target_modules"])
    return LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=targets,
        bias="none",
    )


def save_adapter(
    folder: Path, trained: dict[str, torch.Tensor], settings: dict[str, Any], model_type: str | None
) -> int:
    """best_model/adapter/: the adapters and the head (safetensors), and the LoRA settings.
    Returns the size of the weights in bytes."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(trained, str(folder / ADAPTER_FILE), metadata={"format": "pt"})
    lora_config(settings, model_type).save_pretrained(str(folder))
    return (folder / ADAPTER_FILE).stat().st_size


def load_adapter(model: nn.Module, folder: Path, settings: dict[str, Any]) -> nn.Module:
    """The backbone's model (its pretrained weights) with the saved adapters and head on it."""
    from safetensors.torch import load_file

    add_lora(model, settings)
    missing = set(model.load_state_dict(load_file(str(folder / ADAPTER_FILE)), strict=False)[1])
    if missing:
        raise UserError(f"{folder}: {len(missing)} tensors are not this model's ({missing.pop()})")
    return model
