"""What both trainers share: device and precision choice, and the result they report."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from src.errors import UserError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# logits, labels -> metrics dict (accuracy, precision, recall, f1, ...)
MetricsFn = Callable[[np.ndarray, np.ndarray], dict]


def resolve_device(device: str) -> torch.device:
    """`auto` is cuda, else mps, else cpu."""
    import torch  # here, not at import: config validation reads DEVICES without loading torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = device.split(":")[0]
    if kind not in DEVICES:
        raise UserError(f"device={device}: use one of {', '.join(DEVICES)} (cuda:N for one GPU)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={device}: no CUDA device here; use device=auto or device=cpu")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UserError(
            f"device={device}: MPS is not available here; use device=auto or device=cpu"
        )
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 on CUDA when supported, else fp16 there; fp32 elsewhere.

    Never bf16 on CPU by default: without AVX512-BF16 a bf16 matmul is hundreds of times slower.
    """
    import torch

    if precision not in PRECISIONS:
        raise UserError(f"trainer.precision={precision}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise UserError(f"trainer.precision=fp16 needs CUDA (device is {device.type}); use fp32")
    if precision == "bf16" and device.type == "cpu":
        log.warning("bf16 on CPU: very slow unless the CPU has AVX512-BF16 or AMX")
    return precision


def steps_per_epoch(n_examples: int, batch_size: int, grad_accum_steps: int) -> int:
    return max(1, math.ceil(math.ceil(n_examples / batch_size) / grad_accum_steps))


@dataclass
class TrainResult:
    """Per-epoch history ({epoch, train_loss, eval metrics}), the training loss every
    `logging_steps` optimizer steps ({step, epoch, loss, lr}), the best epoch and throughput."""

    history: list[dict] = field(default_factory=list)
    train_log: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None
    train_seconds: float = 0.0
    train_samples: int = 0
    stopped_early: bool = False

    @property
    def samples_per_second(self) -> float:
        return self.train_samples / self.train_seconds if self.train_seconds else 0.0
