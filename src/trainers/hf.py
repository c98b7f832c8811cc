"""`trainer=hf`: transformers' Trainer with the notebook's TrainingArguments.

The optimizer and scheduler come from their config groups (as for the manual loop), so the two
trainers differ only in the loop. Checkpoints go to `<run dir>/checkpoints`. `logger=tensorboard`
goes through transformers' own TensorBoardCallback; other loggers get the Trainer's logs under
the same tags.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from src import progress
from src.distributed import world_size
from src.errors import Preempted, UserError
from src.loggers import NullLogger, ScalarLogger, TensorBoardLogger
from src.trainers import checkpoint
from src.trainers.common import (
    MetricsFn,
    PreemptionGuard,
    TrainResult,
    check_batches,
    resolve_device,
    resolve_precision,
    steps_per_epoch,
)

log = logging.getLogger(__name__)


class HFTrainer:
    def __init__(
        self,
        epochs: int = 3,
        batch_size: int = 8,
        eval_batch_size: int = 16,
        grad_accum_steps: int = 1,
        max_grad_norm: float | None = 1.0,
        metric_for_best_model: str = "f1",
        early_stopping_patience: int | None = None,
        device: str = "auto",
        precision: str = "auto",
        num_workers: int = 0,
        compile: bool = False,
        seed: int = 42,
        logging_steps: int = 50,
        save_total_limit: int | None = 2,
        logger: ScalarLogger | None = None,
    ):
        self.epochs = epochs
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.grad_accum_steps = grad_accum_steps
        self.max_grad_norm = max_grad_norm
        self.metric = metric_for_best_model
        self.patience = early_stopping_patience
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.num_workers = num_workers
        self.compile = compile
        self.seed = seed
        self.logging_steps = logging_steps
        self.save_total_limit = save_total_limit
        self.logger = logger or NullLogger()
        self._trainer = None

    def num_training_steps(self, n_train: int) -> int:
        return self.epochs * steps_per_epoch(n_train, self.batch_size, self.grad_accum_steps)

    def _args(self, output_dir: Path):
        return TrainingArguments(
            output_dir=str(output_dir / "checkpoints"),
            num_train_epochs=self.epochs,
            per_device_train_batch_size=self.batch_size,
            per_device_eval_batch_size=self.eval_batch_size,
            gradient_accumulation_steps=self.grad_accum_steps,
            max_grad_norm=self.max_grad_norm or 0.0,
            eval_strategy="epoch",
            save_strategy="epoch",
            save_total_limit=self.save_total_limit,
            load_best_model_at_end=True,
            metric_for_best_model=self.metric,
            greater_is_better=True,
            logging_steps=self.logging_steps,
            report_to="none",
            seed=self.seed,
            use_cpu=self.device.type == "cpu",
            bf16=self.precision == "bf16",
            fp16=self.precision == "fp16",
            dataloader_num_workers=self.num_workers,
            torch_compile=self.compile,
            dataloader_pin_memory=self.device.type == "cuda",
            ddp_backend="gloo" if self.device.type == "cpu" and world_size() > 1 else None,
            disable_tqdm=not progress.interactive(),
        )

    @staticmethod
    def latest_checkpoint(folder: Path) -> Path | None:
        """The Trainer's newest `checkpoint-<step>` in a run folder (or its checkpoints/)."""
        from transformers.trainer_utils import get_last_checkpoint

        for candidate in (folder / "checkpoints", folder):
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
        check_batches(len(train_set), self.batch_size)
        if resume_from is not None:
            _check_resumable(resume_from, model)
        timer = _EpochTimer()
        with PreemptionGuard() as guard:
            callbacks = [timer, _StopOnSignal(guard), *self._log_callbacks()]
            if self.patience:
                callbacks.append(EarlyStoppingCallback(self.patience))
            self._trainer = Trainer(
                model=model,
                args=self._args(output_dir),
                train_dataset=train_set,
                eval_dataset=eval_set,
                data_collator=collator,
                compute_metrics=lambda p: metrics_fn(p.predictions, p.label_ids),
                optimizers=(optimizer, scheduler),
                callbacks=callbacks,
            )
            self._trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        if guard.requested:
            raise Preempted(str(self.latest_checkpoint(output_dir)))
        result = TrainResult(
            train_seconds=timer.seconds, train_samples=timer.epochs * len(train_set)
        )
        return self._history(result)

    def _history(self, result: TrainResult) -> TrainResult:
        state = self._trainer.state
        losses: list[float] = []
        for entry in state.log_history:
            if "loss" in entry:
                losses.append(entry["loss"])
                result.train_log.append(
                    {
                        "step": entry["step"],
                        "epoch": entry["epoch"],
                        "loss": float(entry["loss"]),
                        "lr": float(entry.get("learning_rate", 0.0)),
                    }
                )
            if f"eval_{self.metric}" not in entry:
                continue
            metrics = {k[len("eval_") :]: v for k, v in entry.items() if k.startswith("eval_")}
            row = {
                "epoch": round(entry["epoch"]),
                "step": entry["step"],
                "train_loss": float(np.mean(losses)) if losses else None,
            }
            row.update(
                {
                    k: float(v)
                    for k, v in metrics.items()
                    if k not in ("runtime", "loss") and not k.endswith("per_second")
                }
            )
            result.history.append(row)
            losses = []
        best = max(result.history, key=lambda r: r[self.metric])
        result.best_epoch, result.best_metric = best["epoch"], best[self.metric]
        result.stopped_early = state.epoch < self.epochs - 1e-6
        return result

    def _log_callbacks(self) -> list[TrainerCallback]:
        """transformers' TensorBoard integration writing into the logger's folder (report_to
        would pick its own folder), else the Trainer's logs forwarded to the logger."""
        if isinstance(self.logger, TensorBoardLogger):
            from transformers.integrations import TensorBoardCallback

            return [TensorBoardCallback(tb_writer=self.logger.writer)]
        if isinstance(self.logger, NullLogger):
            return []
        return [_ForwardLogs(self.logger)]

    def predict(self, model: torch.nn.Module, dataset, collator) -> np.ndarray:
        """Logits in dataset order, through the Trainer that trained `model` (same device and
        precision)."""
        if self._trainer is None or self._trainer.model is not model:
            raise RuntimeError("HFTrainer.predict runs after fit, on the model it trained")
        return np.asarray(self._trainer.predict(dataset).predictions)


class _EpochTimer(TrainerCallback):
    """Training time without evaluation and checkpointing (on_epoch_end fires before both)."""

    def __init__(self) -> None:
        self.seconds, self.epochs, self._start = 0.0, 0, 0.0

    def on_epoch_begin(self, args, state, control, **kwargs) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs) -> None:
        self.seconds += time.perf_counter() - self._start
        self.epochs += 1


class _StopOnSignal(TrainerCallback):
    """On SIGTERM/SIGUSR1: save a checkpoint at this step and stop (the Trainer's own save)."""

    def __init__(self, guard: PreemptionGuard) -> None:
        self.guard = guard

    def on_step_end(self, args, state, control, **kwargs):
        if self.guard.requested:
            control.should_save = True
            control.should_training_stop = True
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
        raise UserError(
            f"checkpoint {path} was saved from a different model (other backbone or head); "
            "resume with the config it was trained with"
        )


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
