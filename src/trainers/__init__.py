"""Trainers: `hf` (transformers' Trainer) and `manual` (a plain PyTorch loop), one contract.

Both are built from one shared `TrainerConfig`, take the same model, datasets, collator,
optimizer and scheduler, count optimizer steps with the same `optimizer_steps`, evaluate every
epoch, keep the best weights by the chosen metric and report a `TrainResult`. This module
imports no torch: config validation reads it. The package also owns what a training run is
built from and runs on: `build` (the run's objects from its config), the optimizers and
schedules (`optim`), the torch forward of the inference path (`forward`), the processes of a
DDP run (`distributed`), progress bars (`progress`) and the loggers that record training
(`loggers`). It imports src.config, src.tasks, src.data and src.models; no report or sweep.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, replace
from typing import ClassVar

from hydra.utils import get_class

from src.config.devices import DEVICE, PRECISIONS
from src.config.errors import UserError
from src.config.schema import Spec, param
from src.tasks.metrics import REGISTRY
from src.trainers.distributed import world_size


def optimizer_steps(n_train: int, batch_size: int, grad_accum_steps: int, processes: int) -> int:
    """Optimizer steps in one epoch, as both loops take them: each process gets ceil(n / P)
    examples (the sampler pads by wrapping), in batches of `batch_size`, and a partial
    accumulation window at the end of an epoch still steps (transformers' rule)."""
    per_process = math.ceil(n_train / processes)
    return max(1, math.ceil(math.ceil(per_process / batch_size) / grad_accum_steps))


@dataclass(kw_only=True)
class TrainerConfig(Spec):
    """What both loops share (trainer=hf and trainer=manual read the same keys). The keys the
    knobs feed (epochs, batch sizes, the metric, device, compile, seed) have their defaults
    there (src/config/knobs.py, or the task's), none here."""

    epochs: int = param(MISSING, "passes over the training split (more to reach min_steps)", ge=1)
    min_steps: int = param(
        150, "optimizer steps a run takes at least: a small dataset gets more epochs; 0: off", ge=0
    )
    max_epochs: int = param(20, "the most epochs min_steps may raise `epochs` to", ge=1)
    batch_size: int = param(MISSING, "examples per step and process (global = x processes)", ge=1)
    eval_batch_size: int = param(MISSING, "examples per evaluation batch", ge=1)
    grad_accum_steps: int = param(1, "batches whose gradients add up to one step", ge=1)
    group_by_length: bool = param(
        True, "batch examples of similar length (less padding), as transformers' option"
    )
    padding_free: bool = param(
        False,
        "pack each batch's word pieces into one row, no padding, attention within each example "
        "(flash-attention varlen on CUDA); not DeBERTa",
    )
    max_tokens: int | None = param(
        None,
        "the most word pieces one forward holds (examples x the longest; padding_free: their "
        "sum): a larger batch runs as several forwards whose gradients add up to its own, so "
        "the step is the same; trainer=manual; null: one forward per batch",
        ge=1,
    )
    max_grad_norm: float | None = param(1.0, "clip gradients to this norm; null: no clip", ge=0)
    metric_for_best_model: str = param(
        MISSING,
        "picks the best epoch on the eval split (the task's best_metric)",
        choices=tuple(REGISTRY),
    )
    early_stopping_patience: int | None = param(
        3, "stop after N epochs without a better metric_for_best_model; null: never", ge=1
    )
    device: str = param(MISSING, "auto = cuda, else mps, else cpu (the device knob)", **DEVICE)
    precision: str = param(
        "auto",
        "auto: bf16 (else fp16) on CUDA; on CPU bf16 where native (AVX512-BF16, AMX: "
        "detected), else fp32",
        choices=PRECISIONS,
    )
    num_workers: int = param(0, "DataLoader worker processes", ge=0)
    compile: bool = param(MISSING, "torch.compile the training forward (the compile knob)")
    seed: int = param(MISSING, "seeds the weights' init, dropout and batch order (the seed knob)")
    logging_steps: int = param(50, "log the training loss every N optimizer steps", ge=1)
    save_steps: int | None = param(None, "checkpoint every N steps too (and every epoch)", ge=1)
    save_total_limit: int | None = param(2, "checkpoints kept in <run dir>/checkpoints", ge=1)
    keep_checkpoints: bool = param(
        False, "keep <run dir>/checkpoints once the run has finished (resume data, ~3x the model)"
    )

    def check(self, plain) -> None:
        max_length = plain.get("max_length")
        if (
            self.max_tokens is not None
            and isinstance(max_length, int)
            and self.max_tokens < max_length
        ):
            raise UserError(
                f"trainer.max_tokens={self.max_tokens}: below max_length={max_length}, so an "
                f"example of max_length word pieces fits in no forward; use at least {max_length}"
            )

    def steps_per_epoch(self, n_train: int) -> int:
        return optimizer_steps(n_train, self.batch_size, self.grad_accum_steps, world_size())

    def sized(self, n_train: int) -> TrainerConfig:
        """This config with the epochs a training split of `n_train` examples gets: `epochs`,
        or as many more as reach `min_steps` optimizer steps, up to `max_epochs` (a small
        dataset trains long enough; a large one is not made longer)."""
        needed = math.ceil(self.min_steps / self.steps_per_epoch(n_train))
        epochs = max(self.epochs, min(needed, self.max_epochs))
        return self if epochs == self.epochs else replace(self, epochs=epochs)

    def num_training_steps(self, n_train: int) -> int:
        """All optimizer steps of the run, on every process: what the scheduler spans."""
        return self.epochs * self.steps_per_epoch(n_train)

    def build(self, logger=None, loss=None):
        """The loop this config names (its module imports torch, so it loads only here).
        `loss`: (logits, targets) -> loss, the task's weighted one; None: the model's own."""

        return get_class(self.LOOP)(self, logger, loss)


@dataclass(kw_only=True)
class HFTrainerConfig(TrainerConfig):
    """transformers' Trainer."""

    LOOP: ClassVar[str] = "src.trainers.hf.HFTrainer"

    def check(self, plain) -> None:
        if self.max_tokens is not None:
            raise UserError(
                f"trainer.max_tokens={self.max_tokens}: transformers' Trainer accumulates a "
                "fixed number of batches per step, so it cannot split a batch by its word "
                "pieces; use trainer=manual, or set trainer.max_tokens=null and bound the "
                "forward with batch_size and trainer.grad_accum_steps"
            )
        if self.keep_checkpoints and self.save_total_limit == 1:
            raise UserError(
                "trainer.save_total_limit=1: transformers' Trainer keeps only the best epoch's "
                "checkpoint at the end of training, so trainer.keep_checkpoints=true would train "
                "a run further from that epoch, not its last; give trainer.save_total_limit=2"
            )
        super().check(plain)


@dataclass(kw_only=True)
class ManualTrainerConfig(TrainerConfig):
    """The plain PyTorch loop."""

    LOOP: ClassVar[str] = "src.trainers.manual.ManualTrainer"
