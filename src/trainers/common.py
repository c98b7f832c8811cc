"""What both trainers share: device and precision choice, and the result they report."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
        if torch.cuda.is_available():  # under torchrun, each process its own GPU
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
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


class PreemptionGuard:
    """Turns SIGTERM / SIGUSR1 (what SLURM and submitit send before the time limit) into a flag
    the loop reads at the next step boundary, instead of dying mid-step."""

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> PreemptionGuard:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                if hasattr(signal, name):
                    num = getattr(signal, name)
                    self._previous[num] = signal.signal(num, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        log.warning("received signal %d: checkpointing at the next step", signum)
        self.signal = signum

    def __exit__(self, *exc) -> None:
        import signal

        for num, handler in self._previous.items():
            signal.signal(num, handler)

    @property
    def requested(self) -> bool:
        return self.signal is not None


def check_batches(n_train: int, batch_size: int) -> None:
    if n_train < batch_size:
        raise UserError(
            f"batch_size={batch_size}: the training split has only {n_train} examples, fewer "
            "than one batch; lower batch_size or add data"
        )


def find_checkpoint(resume: str | None, run_dir: Path, latest: Callable[[Path], Path | None]):
    """`resume=auto`: the newest complete checkpoint in this run folder, if any; a path: that
    checkpoint, or the newest one in that run folder. `latest` is the trainer's own finder."""
    if resume in (None, "", "none", "null"):
        return None
    if resume == "auto":
        found = latest(run_dir)
        log.info("resume=auto: %s", found or "no checkpoint in this run folder; starting fresh")
        return found
    path = Path(resume)
    if not path.exists():
        raise UserError(f"resume={resume}: no such checkpoint or run folder")
    found = latest(path)
    if found is None and path.name.startswith(("step-", "checkpoint-")):
        found = path
    if found is None:
        raise UserError(f"resume={resume}: no complete checkpoint there")
    return found
