"""Optimizer parameter groups and warmup schedules (pure helpers; the classes come from YAML)."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # SCHEDULES is read by config validation, which must not load torch
    from torch import nn

SCHEDULES = ("linear", "cosine", "constant")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: no weight decay on biases and normalisation weights (nanoGPT)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(factory: functools.partial, model: nn.Module):
    """Call the partial optimizer from YAML on grouped parameters; its weight_decay is per group."""
    return factory(param_groups(model, factory.keywords.get("weight_decay", 0.0)))


def warmup_schedule(
    optimizer, num_training_steps: int, name: str = "linear", warmup_ratio: float = 0.0
):
    """transformers' schedules with warmup given as a fraction of all optimizer steps."""
    from transformers import get_scheduler

    warmup = math.ceil(warmup_ratio * num_training_steps)
    kind = "constant_with_warmup" if name == "constant" else name
    return get_scheduler(
        kind, optimizer, num_warmup_steps=warmup, num_training_steps=num_training_steps
    )
