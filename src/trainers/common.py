"""What both trainers share at run time: their config, device, precision, logger and loss,
class weights, preemption and Ctrl-C, and finding a checkpoint to resume from."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from src.devices import resolve_device, resolve_precision
from src.errors import Interrupted, Preempted, UserError
from src.rundir import CHECKPOINTS_DIR

if TYPE_CHECKING:
    import torch

    from src.loggers import ScalarLogger
    from src.trainers import TrainerConfig

log = logging.getLogger(__name__)

# logits, labels -> metrics dict (accuracy, precision, recall, f1, ...)
MetricsFn = Callable[[np.ndarray, np.ndarray], dict]


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


class PreemptionGuard:
    """Turns SIGTERM / SIGUSR1 (what SLURM and submitit send before the time limit) and a first
    Ctrl-C (SIGINT) into a flag the loop reads at the next step boundary, where it checkpoints
    and raises `stop` instead of dying mid-step. A second Ctrl-C interrupts at once."""

    SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")

    requested = False
    interrupted = False  # the flag came from Ctrl-C
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
        import signal

        if signum == signal.SIGINT:
            if self.interrupted:
                raise KeyboardInterrupt  # the second Ctrl-C: stop now
            self.interrupted = True
            log.warning("Ctrl-C: checkpointing at the next step (Ctrl-C again to stop at once)")
        else:
            log.warning(f"received signal {signum}: checkpointing at the next step")
        self.requested = True

    def stop(self, checkpoint: Path | str | None) -> Preempted:
        """The exception that ends the run once the checkpoint is saved."""
        saved = str(checkpoint) if checkpoint else None
        return Interrupted(saved) if self.interrupted else Preempted(saved)

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
