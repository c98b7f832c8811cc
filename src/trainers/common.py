"""What both trainers share at run time: device and precision, the result they report,
preemption, and finding a checkpoint to resume from."""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from src.errors import UserError
from src.trainers import check_device

if TYPE_CHECKING:
    import torch

    from src.loggers import ScalarLogger
    from src.trainers import TrainerConfig

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"  # <run dir>/checkpoints: both loops' resume checkpoints

# logits, labels -> metrics dict (accuracy, precision, recall, f1, ...)
MetricsFn = Callable[[np.ndarray, np.ndarray], dict]


def resolve_device(device: str) -> torch.device:
    """`auto` is cuda, else mps, else cpu (a named device was checked by validation)."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():  # under torchrun, each process its own GPU
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    check_device("device", device)
    return torch.device(device)


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU computes bf16 natively (the avx512_bf16 or amx_bf16 flag, read on Linux).
    Elsewhere bf16 is emulated: an earlier machine without the flag ran it ~400x slower."""
    try:
        return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", cpuinfo.read_text()))
    except OSError:  # not Linux: no flags to read, so no claim
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 on CUDA when supported, else fp16 there; bf16 autocast on a CPU that has
    native bf16 (detected at run time, not from a list of models); fp32 elsewhere."""
    import torch

    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise UserError(f"trainer.precision=fp16 needs CUDA (device is {device.type}); use fp32")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        log.warning("bf16 on this CPU: no AVX512-BF16 or AMX flag, so it may be very slow")
    return precision


def class_weights(setting: str | list | None, labels: list[int], names: list[str]) -> list | None:
    """`class_weights`: null (an unweighted loss), `balanced` (n / (n_classes * count), as
    scikit-learn's compute_class_weight: each class weighs the same in total), or one weight
    per label in label-id order."""
    if setting is None:
        return None
    if setting == "balanced":
        counts = np.bincount(labels, minlength=len(names))
        if (counts == 0).any():
            missing = [n for n, c in zip(names, counts, strict=True) if c == 0]
            raise UserError(f"class_weights=balanced: no training example of {missing}")
        return (len(labels) / (len(names) * counts)).tolist()
    if len(setting) != len(names):
        raise UserError(
            f"class_weights={setting}: {len(setting)} weights for {len(names)} labels "
            f"({', '.join(names)}); give one per label in that order, or balanced"
        )
    return [float(w) for w in setting]


class Loop:
    """What both loops share: their config, device, precision, logger and loss."""

    def __init__(self, config: TrainerConfig, logger: ScalarLogger | None = None,
                 class_weights: list[float] | None = None):  # fmt: skip
        import torch

        from src.loggers import NullLogger

        self.config = config
        self.metric = config.metric_for_best_model
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.logger = logger or NullLogger()
        self.loss_weight = None if class_weights is None else torch.tensor(class_weights)

    def loss(self, output, labels: torch.Tensor) -> torch.Tensor:
        """The model's own loss, or, with `class_weights`, each example's cross-entropy times
        its class's weight, averaged over the batch: one definition for both heads under both
        trainers.

        Keras' and scikit-learn's class_weight, not torch's `weight=` (which divides by the
        batch's summed weights, so a batch of one class trains as if unweighted). With
        `balanced` the weights average 1 over the training data: the loss keeps its scale.
        """
        import torch.nn.functional as F

        if self.loss_weight is None:
            return output.loss
        losses = F.cross_entropy(output.logits.float(), labels, reduction="none")
        return (losses * self.loss_weight.to(losses.device)[labels]).mean()

    def cleanup(self, output_dir: Path) -> None:
        """After a finished run (its best_model/ and metrics.json written): the resume
        checkpoints (weights, optimizer state) go, unless `trainer.keep_checkpoints`."""
        folder = output_dir / CHECKPOINTS_DIR
        if not self.config.keep_checkpoints and folder.is_dir():
            shutil.rmtree(folder)
            log.info(f"deleted {folder} (a finished run; trainer.keep_checkpoints=true keeps it)")


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
    final_lr: float | None = None  # after the last step: 0 when a decaying schedule completed

    @property
    def samples_per_second(self) -> float:
        return self.train_samples / self.train_seconds if self.train_seconds else 0.0


class PreemptionGuard:
    """Turns SIGTERM / SIGUSR1 (what SLURM and submitit send before the time limit) into a flag
    the loop reads at the next step boundary, instead of dying mid-step."""

    SIGNALS = ("SIGTERM", "SIGUSR1")

    requested = False
    _previous: dict

    def __enter__(self) -> PreemptionGuard:
        import signal
        import threading

        self._previous = {}
        if threading.current_thread() is threading.main_thread():  # signals: main thread only
            for num in (getattr(signal, n) for n in self.SIGNALS if hasattr(signal, n)):
                self._previous[num] = signal.signal(num, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        log.warning(f"received signal {signum}: checkpointing at the next step")
        self.requested = True

    def __exit__(self, *exc) -> None:
        import signal

        for num, handler in self._previous.items():
            signal.signal(num, handler)


def check_batches(n_train: int, batch_size: int) -> None:
    if n_train < batch_size:
        raise UserError(
            f"batch_size={batch_size}: the training split has only {n_train} examples, fewer "
            "than one batch; lower batch_size or add data"
        )


def find_checkpoint(resume: str | None, run_dir: Path, latest: Callable[[Path], Path | None]):
    """`resume=auto`: the newest complete checkpoint in this run folder, if any; a path (checked
    to exist by validation): that checkpoint, or the newest one in that run folder. `latest` is
    the trainer's own finder."""
    if resume in (None, "", "none", "null"):
        return None
    folder = run_dir if resume == "auto" else Path(resume)
    found = latest(folder)
    if found is None and folder.name.startswith(("step-", "checkpoint-")):
        found = folder
    if found is None and resume != "auto":
        raise UserError(f"resume={resume}: no complete checkpoint there")
    log.info(f"resume={resume}: {found or 'no checkpoint in this run folder; starting fresh'}")
    return found
