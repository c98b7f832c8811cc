"""Optimizers and learning-rate schedules: their configs, and the pure helpers they use.

The optimizers are torch's; weight decay applies to matrices only (not biases or LayerNorm),
as in transformers' Trainer. A config may also name another torch optimizer directly
(`_target_: torch.optim.Adam` with `_partial_: true`): `build_optimizer` takes either.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass
from typing import TYPE_CHECKING, Any

from src.config.schema import Spec, fields, param

if TYPE_CHECKING:  # the configs are read by validation, which must not load torch
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


def _betas(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(b, int | float) and 0 <= b < 1 for b in value)
    )


@dataclass
class TorchOptimizer(Spec):
    """A torch.optim class of the same name, on parameter groups: weight decay for matrices."""

    lr: float = param(MISSING, "the peak learning rate (the lr knob)", gt=0)

    def build(self, model: nn.Module, device: str = "cpu"):
        import torch

        kwargs = {name: getattr(self, name) for name in fields(type(self))}
        groups = param_groups(model, kwargs.pop("weight_decay"))
        return getattr(torch.optim, type(self).__name__)(groups, **self.resolve(kwargs, device))

    def resolve(self, kwargs: dict[str, Any], device: str) -> dict[str, Any]:
        """The keyword arguments as torch gets them on `device` (the run's device type)."""
        return kwargs


@dataclass
class AdamW(TorchOptimizer):
    """torch.optim.AdamW."""

    weight_decay: float = param(0.01, "decoupled weight decay (matrices only)", ge=0)
    betas: list[float] = param(
        [0.9, 0.999], "moment decay rates", test=_betas, allowed="a list of two numbers in [0, 1)"
    )
    eps: float = param(1e-8, "added to the denominator", gt=0)
    amsgrad: bool = param(False, "the AMSGrad variant")
    fused: bool | None = param(
        None,
        "one fused kernel for every parameter's update (torch's fused=True); null: fused on "
        "the CPU (a MiniLM step 7.6x faster than torch's loop over parameters), torch's "
        "default (foreach) on a GPU",
    )

    def resolve(self, kwargs: dict[str, Any], device: str) -> dict[str, Any]:
        """`fused: null` is fused on the CPU, where torch's default updates one parameter after
        another: an AdamW step of all-MiniLM-L6-v2 took 224 ms so and 30 ms fused (one thread,
        AVX2 EPYC; `python -m benchmarks.optimizer_step`, docs/configuration.md). On a GPU
        torch's default stays until benchmarks/gpu.py's `+ fused AdamW` row shows the fused
        kernel pays there."""
        if kwargs["fused"] is None and device == "cpu":
            return {**kwargs, "fused": True}
        return kwargs


@dataclass
class SGD(TorchOptimizer):
    """torch.optim.SGD."""

    momentum: float = param(0.9, "momentum factor", ge=0)
    dampening: float = param(0.0, "dampening for momentum", ge=0)
    weight_decay: float = param(0.0, "L2 penalty (matrices only)", ge=0)
    nesterov: bool = param(False, "Nesterov momentum")


def build_optimizer(optimizer: Spec | Any, model: nn.Module, device: str = "cpu"):
    """Our optimizer configs build themselves for the run's device type (`cpu`, `cuda`...); a
    partial torch optimizer from YAML is called on the grouped parameters (its weight_decay
    applies per group)."""
    if isinstance(optimizer, Spec):
        return optimizer.build(model, device)
    return optimizer(param_groups(model, optimizer.keywords.get("weight_decay", 0.0)))


@dataclass
class Schedule(Spec):
    """transformers' schedules, with warmup given as a fraction of all optimizer steps."""

    name: str = param("linear", "the decay after warmup", choices=SCHEDULES)
    warmup_ratio: float = param(
        0.1, "the share of all optimizer steps spent warming up", ge=0, le=1
    )

    def build(self, optimizer, num_training_steps: int):
        from transformers import get_scheduler

        warmup = math.ceil(self.warmup_ratio * num_training_steps)
        kind = "constant_with_warmup" if self.name == "constant" else self.name
        return get_scheduler(
            kind, optimizer, num_warmup_steps=warmup, num_training_steps=num_training_steps
        )
