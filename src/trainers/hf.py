"""`trainer=hf`: transformers' Trainer with the notebook's TrainingArguments.

The optimizer and scheduler come from their config groups (as for the manual loop), so the two
trainers differ only in the loop. Checkpoints go to `<run dir>/checkpoints`. `logger=tensorboard`
goes through transformers' own TensorBoardCallback; other loggers get the Trainer's logs under
the same tags.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.integrations import TensorBoardCallback
from transformers.trainer_utils import get_last_checkpoint

from src.config.errors import UserError
from src.config.rundir import CHECKPOINTS_DIR
from src.trainers import checkpoint, progress
from src.trainers.common import (
    BaseTrainer,
    MetricsFn,
    PreemptionGuard,
    TrainResult,
    check_batches,
)
from src.trainers.distributed import world_size
from src.trainers.loggers import NullLogger, ScalarLogger, TensorBoardLogger

log = logging.getLogger(__name__)


class HFTrainer(BaseTrainer):
    _trainer: _Trainer | None = None  # transformers' Trainer, made by fit

    def _args(self, output_dir: Path):
        cfg = self.config
        return TrainingArguments(
            output_dir=str(output_dir / CHECKPOINTS_DIR),
            num_train_epochs=cfg.epochs,
            per_device_train_batch_size=cfg.batch_size,
            per_device_eval_batch_size=cfg.eval_batch_size,
            gradient_accumulation_steps=cfg.grad_accum_steps,
            train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
            # our collator makes exactly the model's batch; the Trainer's column filter would
            # drop each example's frozen-cache row (the model's forward hook takes it)
            remove_unused_columns=False,
            max_grad_norm=cfg.max_grad_norm or 0.0,
            eval_strategy="epoch",
            save_strategy="epoch",
            save_total_limit=cfg.save_total_limit,
            load_best_model_at_end=True,
            metric_for_best_model=self.metric,
            greater_is_better=self.greater_is_better,
            logging_steps=cfg.logging_steps,
            report_to="none",
            seed=cfg.seed,
            use_cpu=self.device.type == "cpu",
            bf16=self.precision == "bf16",
            fp16=self.precision == "fp16",
            dataloader_num_workers=cfg.num_workers,
            torch_compile=cfg.compile,
            dataloader_pin_memory=self.device.type == "cuda",
            ddp_backend="gloo" if self.device.type == "cpu" and world_size() > 1 else None,
            disable_tqdm=not progress.interactive(),
        )

    @staticmethod
    def latest_checkpoint(folder: Path) -> Path | None:
        """The Trainer's newest `checkpoint-<step>` in a run folder (or its checkpoints/)."""
        for candidate in (folder / CHECKPOINTS_DIR, folder):
            if candidate.is_dir() and (found := get_last_checkpoint(str(candidate))):
                return Path(found)
        return None

    def fit(
        self,
        model: torch.nn.Module,
        train_set,
        eval_set,
        collator,
        optimizer,
        scheduler,
        metrics_fn: MetricsFn,
        output_dir: Path,
        resume_from: Path | None = None,
    ) -> TrainResult:
        check_batches(len(train_set), self.config.batch_size)
        if resume_from is not None:
            _check_resumable(resume_from, model)
        with PreemptionGuard() as guard:
            bookkeeping = _Bookkeeping(guard, self.config.save_steps)
            carried = resume_from / EPOCH_LOSSES_FILE if resume_from is not None else None
            if carried is not None and carried.is_file():
                bookkeeping.carried = json.loads(carried.read_text())
            callbacks = [bookkeeping, *self._log_callbacks()]
            if self.config.early_stopping_patience:
                callbacks.append(EarlyStoppingCallback(self.config.early_stopping_patience))
            pruning = _Pruning(self)
            callbacks.append(pruning)
            self._trainer = _Trainer(
                model=model,
                args=self._args(output_dir),
                train_dataset=train_set,
                eval_dataset=eval_set,
                data_collator=collator,
                # the Trainer's prediction loop is the backend: its rows, pooled per document
                compute_metrics=lambda p: metrics_fn.evaluate(eval_set, lambda _: p.predictions),
                optimizers=(optimizer, scheduler),
                callbacks=callbacks,
            )
            bookkeeping.trainer = self._trainer
            if self.loss_fn is not None:
                self._trainer.loss_of, self._trainer.loss_is_scaled_for_ga = self.loss, False
            self._trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        if guard.requested:
            raise guard.stop(self.latest_checkpoint(output_dir))
        result = TrainResult(
            train_seconds=bookkeeping.seconds,
            train_samples=bookkeeping.epochs * len(train_set),
            final_lr=self._trainer.lr_scheduler.get_last_lr()[0],
            pruned=pruning.stopped,
        )
        return self._history(result)

    def _history(self, result: TrainResult) -> TrainResult:
        """TrainResult from the Trainer's log history (kept in its checkpoints, so resumed runs
        report every epoch): the logged losses, each epoch's mean batch loss, the eval rows."""
        state = self._trainer.state
        epoch_losses = [e[EPOCH_LOSS] for e in state.log_history if EPOCH_LOSS in e]
        for entry in state.log_history:
            if "loss" in entry:
                lr = float(entry.get("learning_rate", 0.0))
                at = {"step": entry["step"], "epoch": entry["epoch"]}
                result.train_log.append({**at, "loss": float(entry["loss"]), "lr": lr})
            if f"eval_{self.metric}" not in entry:
                continue
            epoch = round(entry["epoch"])
            row = {
                "epoch": epoch,
                "step": entry["step"],
                "train_loss": epoch_losses[epoch - 1] if epoch <= len(epoch_losses) else None,
            }
            for key, value in entry.items():
                name = key[len("eval_") :]
                if key.startswith("eval_") and name != "loss" and name not in _EVAL_TIMINGS:
                    row[name] = float(value)
            result.history.append(row)
        pick = max if self.greater_is_better else min
        best = pick(result.history, key=lambda r: r[self.metric])
        result.best_epoch, result.best_metric = best["epoch"], best[self.metric]
        result.stopped_early = state.epoch < self.config.epochs - 1e-6
        return result

    def _log_callbacks(self) -> list[TrainerCallback]:
        """transformers' TensorBoard integration writing into the logger's folder (report_to
        would pick its own folder), else the Trainer's logs forwarded to the logger."""
        if isinstance(self.logger, TensorBoardLogger):
            return [TensorBoardCallback(tb_writer=self.logger.writer)]
        if isinstance(self.logger, NullLogger):
            return []
        return [_ForwardLogs(self.logger)]

    def predict(self, model: torch.nn.Module, dataset, collator) -> np.ndarray:
        """Logits in dataset order, through the Trainer that trained `model` (same device,
        precision and processes): this trainer's backend for src.tasks.inference."""
        if self._trainer is None or self._trainer.model is not model:
            raise RuntimeError("HFTrainer.predict runs after fit, on the model it trained")
        scorer, self._trainer.compute_metrics = self._trainer.compute_metrics, None
        try:  # rows only: the eval split's scorer does not score other splits' windows
            return np.asarray(self._trainer.predict(dataset).predictions)
        finally:
            self._trainer.compute_metrics = scorer


EPOCH_LOSS = "epoch_train_loss"  # our entry in the Trainer's log history
EPOCH_SECONDS = "train_seconds_so_far"  # in that entry: training time up to its epoch
EPOCH_LOSSES_FILE = "epoch_losses.json"  # in a checkpoint inside an epoch: its batch losses
_EVAL_TIMINGS = ("runtime", "samples_per_second", "steps_per_second")


class _Trainer(Trainer):
    """Keeps each training batch's loss (on the device), so that an epoch's train_loss is the
    mean over its batches, as in the manual loop, not a mean of logging windows."""

    batch_losses: list[torch.Tensor]

    loss_of: Callable | None = None  # BaseTrainer.loss, when the task weights it (class_weights)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.loss_of is None:
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        else:  # a batch mean, which the Trainer then divides by the accumulation steps
            outputs = model(**inputs)
            loss = self.loss_of(outputs, inputs["labels"])
            out = (loss, outputs) if return_outputs else loss
        if model.training:
            self.batch_losses.append((out[0] if return_outputs else out).detach())
        return out


class _Bookkeeping(TrainerCallback):
    """What the Trainer does not do itself: training time without evaluation and checkpointing
    (on_epoch_end fires before both), each epoch's mean batch loss (into the log history),
    a save every `save_steps`, and on SIGTERM/SIGUSR1 a checkpoint at this step, then a stop
    without evaluating the cut epoch (the grace period is short)."""

    def __init__(self, guard: PreemptionGuard, save_steps: int | None) -> None:
        self.guard, self.save_steps = guard, save_steps
        self.seconds, self.epochs, self._start = 0.0, 0, 0.0
        self.trainer: _Trainer | None = None
        # the batch losses a resumed epoch had before its checkpoint (EPOCH_LOSSES_FILE), so
        # its mean is the whole epoch's, as an uninterrupted run's
        self.carried: list[float] = []
        self._in_epoch = False

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        """Resumed: the time and epochs of the attempts before, from the log history the
        checkpoint kept (each epoch's record holds the training time so far), so that
        train_seconds and train_samples count the whole run, as the manual loop's do."""
        epochs = [e for e in state.log_history if EPOCH_LOSS in e]
        self.seconds = epochs[-1].get(EPOCH_SECONDS, 0.0) if epochs else 0.0
        self.epochs = len(epochs)

    def on_epoch_begin(self, args, state, control, **kwargs) -> None:
        self.trainer.batch_losses = [torch.tensor(loss) for loss in self.carried]
        self.carried, self._in_epoch = [], True
        self._start = time.perf_counter()

    def on_save(self, args, state, control, **kwargs) -> None:
        """A checkpoint inside an epoch (save_steps, a signal) keeps that epoch's batch losses
        so far; one at an epoch's end needs none."""
        if self._in_epoch and state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            losses = [float(loss) for loss in self.trainer.batch_losses]
            (folder / EPOCH_LOSSES_FILE).write_text(json.dumps(losses))

    def on_step_end(self, args, state, control, **kwargs):
        if self.guard.requested:
            control.should_save, control.should_training_stop = True, True
        elif self.save_steps and state.global_step % self.save_steps == 0:
            control.should_save = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        self._in_epoch = False
        self.seconds += time.perf_counter() - self._start
        self.epochs += 1
        loss = torch.stack(self.trainer.batch_losses).float().mean().item()
        state.log_history.append(
            {
                EPOCH_LOSS: loss,
                EPOCH_SECONDS: self.seconds,
                "epoch": state.epoch,
                "step": state.global_step,
            }
        )
        if self.guard.requested:
            control.should_evaluate, control.should_save = False, False
        return control


def _check_resumable(path: Path, model: torch.nn.Module) -> None:
    weights = path / "model.safetensors"
    if not (path / "trainer_state.json").is_file() or not weights.is_file():
        raise UserError(
            f"resume={path}: not a Trainer checkpoint (no trainer_state.json or weights)"
        )
    try:
        same = checkpoint.matches(weights, model)
    except Exception as e:  # safetensors raises its own error types for a damaged header
        raise UserError(f"checkpoint {path} is truncated or corrupt ({type(e).__name__})") from None
    if not same:
        raise checkpoint.foreign(path)


class _Pruning(TrainerCallback):
    """Each epoch's evaluation goes to the study's trial (BaseTrainer.pruned); the Trainer stops
    at the end of the epoch when the pruner says so."""

    def __init__(self, trainer: BaseTrainer) -> None:
        self.trainer, self.stopped = trainer, False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(f"eval_{self.trainer.metric}")
        if value is not None and self.trainer.pruned(round(state.epoch), value):
            self.stopped = control.should_training_stop = True


class _ForwardLogs(TrainerCallback):
    """The Trainer's logs to a ScalarLogger, tagged as its TensorBoard integration tags them."""

    def __init__(self, logger: ScalarLogger) -> None:
        self.logger = logger

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        scalars = {
            (f"eval/{k[len('eval_') :]}" if k.startswith("eval_") else f"train/{k}"): float(v)
            for k, v in (logs or {}).items()
            if isinstance(v, int | float)
        }
        self.logger.log(scalars, state.global_step)
