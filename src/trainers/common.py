"""What both trainers share at run time: their config, device, precision, logger and loss,
which way the chosen metric improves, preemption and Ctrl-C, and finding a checkpoint to
resume from."""

from __future__ import annotations

import functools
import logging
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from src.config.devices import resolve_device, resolve_precision
from src.config.errors import Interrupted, Preempted, UserError
from src.config.rundir import CHECKPOINTS_DIR
from src.tasks.metrics import higher_is_better
from src.trainers import distributed
from src.trainers.loggers import NullLogger

if TYPE_CHECKING:
    import torch

    from src.tasks.inference import Backend
    from src.trainers import TrainerConfig
    from src.trainers.loggers import ScalarLogger

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a trainer reports: per-epoch history ({epoch, step, train_loss, eval metrics}),
    the training loss every `logging_steps` optimizer steps ({step, epoch, loss, lr}), the
    best epoch and throughput. Its fields are metrics.json's, inline."""

    history: list[dict] = field(default_factory=list)
    train_log: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None
    train_seconds: float = 0.0
    train_samples: int = 0
    stopped_early: bool = False
    pruned: bool = False  # a study's pruner stopped it (hparams_search=optuna with a pruner)
    final_lr: float | None = None  # after the last step: 0 when a decaying schedule completed

    @property
    def samples_per_second(self) -> float:
        return self.train_samples / self.train_seconds if self.train_seconds else 0.0


class MetricsFn(Protocol):
    """An evaluation (src.tasks.metrics.Scorer): encoded examples through a backend -> the task's
    metrics (accuracy, precision, recall, f1, ...), counted per document."""

    def evaluate(self, examples: Any, backend: Backend) -> dict[str, float]: ...


LossFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]  # logits, targets -> loss


class BaseTrainer:
    """What both trainers share: their config, device, precision, logger and loss."""

    def __init__(
        self, config: TrainerConfig, logger: ScalarLogger | None = None, loss: LossFn | None = None
    ):

        self.config = config
        self.metric = config.metric_for_best_model
        self.greater_is_better = higher_is_better(self.metric)
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.logger = logger or NullLogger()
        self.loss_fn = loss
        self.trial = None  # a study's job reports each epoch to its trial (src.sweeps.study)

    def pruned(self, epoch: int, value: float) -> bool:
        """After an epoch's evaluation: report it to the study's trial (if a study launched
        this run); True on every rank when the study's pruner stops the trial here."""
        if self.trial is None:
            return False

        # step: the epoch counted from 0, as Optuna's integrations report it (a pruner's
        # n_warmup_steps=1 then spares the first epoch)
        stop = distributed.is_main() and self.trial.should_prune(epoch - 1, value)
        if stop:
            log.info(
                f"pruned: the study's pruner stopped this trial after epoch {epoch} "
                f"({self.metric}={value:.4f})"
            )
        return distributed.any_rank(stop)

    def backend(self, model: torch.nn.Module, collator: Callable) -> Backend:
        """How this trainer computes examples' logits (`predict`), as src.tasks.inference's backend:
        evaluation and the test scoring pool its rows into documents there."""
        return functools.partial(self.predict, model, collator=collator)

    def predict(self, model: torch.nn.Module, dataset, collator) -> np.ndarray:
        raise NotImplementedError

    def loss(self, output, labels: torch.Tensor) -> torch.Tensor:
        """The model's own loss (transformers' for its problem_type, under either head), or the
        task's weighted one with `class_weights` (src.tasks): one definition for both heads
        under both trainers."""
        return output.loss if self.loss_fn is None else self.loss_fn(output.logits, labels)

    def improved(self, value: float, best: float | None) -> bool:
        """Whether `value` of the chosen metric beats the best so far (lower is better for
        mse, mae, hamming_loss)."""
        return best is None or (value > best if self.greater_is_better else value < best)

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

        self._previous = {}
        if threading.current_thread() is threading.main_thread():  # signals: main thread only
            for num in (getattr(signal, n) for n in self.SIGNALS if hasattr(signal, n)):
                self._previous[num] = signal.signal(num, self._handle)
        return self

    def _handle(self, signum, frame) -> None:

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

        for num, handler in self._previous.items():
            signal.signal(num, handler)


# transformers' group_by_length: a megabatch of this many batches is sorted by length
MEGABATCH = 50


def length_grouped(
    order: list[int], lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[int]:
    """`order` (a shuffled epoch) regrouped so that a batch pads little, as transformers'
    `group_by_length`: each run of MEGABATCH batches is sorted longest first, then the full
    batches are shuffled (so an epoch does not sweep long to short), the partial one last.
    The same examples, each once; a function of `order` and `rng` alone."""
    size = MEGABATCH * batch_size
    keyed = np.asarray(lengths)
    grouped = []
    for start in range(0, len(order), size):
        mega = order[start : start + size]
        grouped += [mega[i] for i in np.argsort(-keyed[mega], kind="stable")]
    batches = [grouped[i : i + batch_size] for i in range(0, len(grouped), batch_size)]
    partial = [batches.pop()] if len(batches[-1]) < batch_size else []
    return [i for b in [batches[j] for j in rng.permutation(len(batches))] + partial for i in b]


def token_budget(
    batch: list[int], lengths: np.ndarray, max_tokens: int, packed: bool
) -> list[list[int]]:
    """`batch` as forwards of at most `max_tokens` word pieces each, longest examples first: a
    padded forward costs its examples x its longest, a packed one (trainer.padding_free) the sum
    of their lengths. One example alone always fits (TrainerConfig.check: max_tokens >=
    max_length)."""
    parts: list[list[int]] = [[]]
    width = total = 0
    for i in sorted(batch, key=lambda i: -int(lengths[i])):
        n = int(lengths[i])
        cost = total + n if packed else (len(parts[-1]) + 1) * max(width, n)
        if parts[-1] and cost > max_tokens:
            parts.append([])
            width = total = 0
        parts[-1].append(i)
        width, total = max(width, n), total + n
    return parts


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
