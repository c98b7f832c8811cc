"""`trainer=manual`: the notebook's hand-written loop, with what it lacked.

Evaluates every epoch, logs each epoch's mean loss, keeps and restores the best weights,
clips gradients, accumulates them, and uses mixed precision on CUDA only.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from src.loggers import NullLogger, ScalarLogger
from src.trainers.common import (
    MetricsFn,
    TrainResult,
    resolve_device,
    resolve_precision,
    steps_per_epoch,
)

log = logging.getLogger(__name__)


class ManualTrainer:
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
        seed: int = 42,
        logging_steps: int = 50,
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
        self.seed = seed
        self.logging_steps = logging_steps
        self.logger = logger or NullLogger()

    def num_training_steps(self, n_train: int) -> int:
        return self.epochs * steps_per_epoch(n_train, self.batch_size, self.grad_accum_steps)

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _loader(self, dataset, collator, batch_size: int, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=collator,
            generator=generator,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )

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
    ) -> TrainResult:
        model.to(self.device)
        scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        loader = self._loader(train_set, collator, self.batch_size, shuffle=True)
        result, best_state, bad_epochs = TrainResult(), None, 0
        step, steps = 0, steps_per_epoch(len(train_set), self.batch_size, self.grad_accum_steps)
        for epoch in range(1, self.epochs + 1):
            model.train()
            start, losses = time.perf_counter(), []
            bar = tqdm(loader, desc=f"epoch {epoch}/{self.epochs}", leave=False, disable=None)
            for i, batch in enumerate(bar):
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                with self._autocast():
                    loss = model(**batch).loss
                scaler.scale(loss / self.grad_accum_steps).backward()
                losses.append(loss.item())
                if (i + 1) % self.grad_accum_steps == 0 or i + 1 == len(loader):
                    if self.max_grad_norm:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), self.max_grad_norm)
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    if self.logging_steps and step % self.logging_steps == 0:
                        window = losses[-self.logging_steps * self.grad_accum_steps :]
                        entry = {
                            "step": step,
                            "epoch": round(step / steps, 4),
                            "loss": float(np.mean(window)),
                            "lr": scheduler.get_last_lr()[0],
                        }
                        result.train_log.append(entry)
                        self.logger.log(
                            {"train/loss": entry["loss"], "train/learning_rate": entry["lr"]}, step
                        )
                        log.info("step %d loss %.4f lr %.2e", step, entry["loss"], entry["lr"])
                bar.set_postfix(loss=f"{loss.item():.4f}")
            result.train_seconds += time.perf_counter() - start
            result.train_samples += len(train_set)

            logits = self.predict(model, eval_set, collator)
            metrics = metrics_fn(logits, np.asarray([ex["labels"] for ex in eval_set]))
            row = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)), **metrics}
            result.history.append(row)
            self.logger.log({f"eval/{k}": v for k, v in metrics.items()}, step)
            log.info(
                "epoch %d/%d %s",
                epoch,
                self.epochs,
                " ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)),
            )

            if result.best_metric is None or metrics[self.metric] > result.best_metric:
                result.best_metric, result.best_epoch, bad_epochs = metrics[self.metric], epoch, 0
                best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                }
            else:
                bad_epochs += 1
                if self.patience and bad_epochs >= self.patience:
                    log.info(
                        "early stopping: %s did not improve for %d epochs", self.metric, bad_epochs
                    )
                    result.stopped_early = True
                    break
        model.load_state_dict(best_state)
        log.info(
            "restored the best weights: epoch %d, %s=%.4f",
            result.best_epoch,
            self.metric,
            result.best_metric,
        )
        return result

    @torch.no_grad()
    def predict(self, model: torch.nn.Module, dataset, collator) -> np.ndarray:
        """Logits for every example, in dataset order."""
        model.to(self.device).eval()
        out = []
        loader = self._loader(dataset, collator, self.eval_batch_size, shuffle=False)
        for batch in tqdm(loader, desc="eval", leave=False, disable=None):
            batch = {
                k: v.to(self.device, non_blocking=True) for k, v in batch.items() if k != "labels"
            }
            with self._autocast():
                out.append(model(**batch).logits.float().cpu())
        return torch.cat(out).numpy()
