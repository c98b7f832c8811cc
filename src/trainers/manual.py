"""`trainer=manual`: the notebook's hand-written loop, with what it lacked.

Evaluates every epoch, logs each epoch's mean loss, keeps and restores the best weights,
clips gradients, accumulates them, uses mixed precision on CUDA only, and checkpoints every
epoch (and every `save_steps`) so a killed or preempted run resumes exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from src import distributed
from src.errors import Preempted
from src.loggers import NullLogger, ScalarLogger
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


@dataclass
class _Progress:
    """The loop counters a checkpoint stores besides model, optimizer and RNG states."""

    epoch: int = 1  # the epoch in progress
    batches_done: int = 0  # batches of that epoch already trained on
    step: int = 0  # optimizer steps so far
    epoch_losses: list[float] = field(default_factory=list)
    bad_epochs: int = 0


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
        compile: bool = False,
        seed: int = 42,
        logging_steps: int = 50,
        save_steps: int | None = None,
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
        self.save_steps = save_steps
        self.save_total_limit = save_total_limit
        self.logger = logger or NullLogger()

    def num_training_steps(self, n_train: int) -> int:
        return self.epochs * self._steps_per_epoch(n_train)

    def _steps_per_epoch(self, n_train: int) -> int:
        per_rank = -(-n_train // distributed.world_size())
        return steps_per_epoch(per_rank, self.batch_size, self.grad_accum_steps)

    @staticmethod
    def latest_checkpoint(folder: Path) -> Path | None:
        """The newest complete checkpoint of a run folder (or of its checkpoints/ folder)."""
        return checkpoint.latest(folder / "checkpoints") or checkpoint.latest(folder)

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _batches(self, n: int, epoch: int) -> list[list[int]]:
        """This rank's shuffled batches for `epoch`: a function of (seed, epoch) alone, so a
        resumed run sees the same order and can skip the batches it already trained on.
        `batch_size` is per process, as in transformers (global = batch_size x processes)."""
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch))
        mine = distributed.shard(order.tolist())
        return [mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size)]

    def _loader(self, dataset, collator, batch_sampler) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=collator,
            # its own generator: creating an iterator would otherwise draw from the global RNG,
            # and a resumed run would then see different dropout masks
            generator=torch.Generator().manual_seed(self.seed),
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
        resume_from: Path | None = None,
    ) -> TrainResult:
        check_batches(len(train_set), self.batch_size)
        model.to(self.device)
        net = model  # what the loop calls: DDP syncs gradients across processes under torchrun
        if distributed.world_size() > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.compile:  # the training forward only; checkpoints and eval use `model` as is
            net = torch.compile(net)
        scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        ckpt_dir = output_dir / "checkpoints"
        result, progress, best_file = TrainResult(), _Progress(), None
        if resume_from is not None:
            result, progress, best_file = self._restore(
                resume_from, model, optimizer, scheduler, scaler, ckpt_dir
            )

        def save() -> Path:
            path = ckpt_dir / checkpoint.step_name(progress.step)
            if not distributed.is_main():
                distributed.barrier()
                return path
            state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": checkpoint.rng_state(),
                "progress": asdict(progress),
                "result": asdict(result),
            }
            checkpoint.save(
                ckpt_dir,
                progress.step,
                checkpoint.cpu_state(model),
                best_file,
                state,
                self.save_total_limit,
            )
            distributed.barrier()
            return path

        steps = self._steps_per_epoch(len(train_set))
        # Step losses stay on the device until they are logged or saved: a `.item()` per step
        # would wait for the GPU every step and stop the host from queueing the next one.
        pending: list[torch.Tensor] = []

        def flush() -> None:
            if pending:
                progress.epoch_losses.extend(torch.stack(pending).float().cpu().tolist())
                pending.clear()

        with PreemptionGuard() as guard:
            while progress.epoch <= self.epochs and not result.stopped_early:
                batches = self._batches(len(train_set), progress.epoch)
                loader = self._loader(train_set, collator, batches[progress.batches_done :])
                model.train()
                start = time.perf_counter()
                bar = tqdm(
                    loader, desc=f"epoch {progress.epoch}/{self.epochs}", leave=False, disable=None
                )
                for i, batch in enumerate(bar, start=progress.batches_done):
                    batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                    with self._autocast():
                        loss = net(**batch).loss
                    scaler.scale(loss / self.grad_accum_steps).backward()
                    pending.append(loss.detach())
                    if (i + 1) % self.grad_accum_steps and i + 1 < len(batches):
                        continue
                    self._optimizer_step(model, optimizer, scheduler, scaler)
                    progress.step, progress.batches_done = progress.step + 1, i + 1
                    if self.logging_steps and progress.step % self.logging_steps == 0:
                        flush()
                        self._log_step(result, progress, steps, scheduler)
                        bar.set_postfix(loss=f"{progress.epoch_losses[-1]:.4f}")
                    stop = distributed.any_rank(guard.requested)
                    if stop or (self.save_steps and progress.step % self.save_steps == 0):
                        flush()
                        result.train_seconds += time.perf_counter() - start
                        start = time.perf_counter()
                        path = save()
                        if stop:
                            raise Preempted(str(path))
                flush()
                result.train_seconds += time.perf_counter() - start
                result.train_samples += len(train_set)
                best_file = self._end_epoch(
                    model, eval_set, collator, metrics_fn, result, progress, ckpt_dir, best_file
                )
                save()
        model.load_state_dict(checkpoint.load_weights(best_file))
        log.info(
            "restored the best weights: epoch %d, %s=%.4f",
            result.best_epoch,
            self.metric,
            result.best_metric,
        )
        return result

    def _optimizer_step(self, model, optimizer, scheduler, scaler) -> None:
        if self.max_grad_norm:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    def _log_step(self, result: TrainResult, progress: _Progress, steps: int, scheduler) -> None:
        window = progress.epoch_losses[-self.logging_steps * self.grad_accum_steps :]
        entry = {
            "step": progress.step,
            "epoch": round(progress.step / steps, 4),
            "loss": float(np.mean(window)),
            "lr": scheduler.get_last_lr()[0],
        }
        result.train_log.append(entry)
        self.logger.log(
            {"train/loss": entry["loss"], "train/learning_rate": entry["lr"]}, entry["step"]
        )
        log.info("step %d loss %.4f lr %.2e", entry["step"], entry["loss"], entry["lr"])

    def _end_epoch(
        self,
        model,
        eval_set,
        collator,
        metrics_fn,
        result: TrainResult,
        progress: _Progress,
        ckpt_dir: Path,
        best_file: Path | None,
    ) -> Path | None:
        """Evaluate, track the best weights and early stopping, and move to the next epoch."""
        logits = self.predict(model, eval_set, collator)
        metrics = metrics_fn(logits, np.asarray([ex["labels"] for ex in eval_set]))
        row = {
            "epoch": progress.epoch,
            "step": progress.step,
            "train_loss": float(np.mean(progress.epoch_losses)),
            **metrics,
        }
        result.history.append(row)
        self.logger.log({f"eval/{k}": v for k, v in metrics.items()}, progress.step)
        log.info(
            "epoch %d/%d %s",
            progress.epoch,
            self.epochs,
            " ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)),
        )
        if result.best_metric is None or metrics[self.metric] > result.best_metric:
            result.best_metric, result.best_epoch = metrics[self.metric], progress.epoch
            progress.bad_epochs = 0
            best_file = checkpoint.save_best(
                ckpt_dir, progress.epoch, checkpoint.cpu_state(model), write=distributed.is_main()
            )
            distributed.barrier()
        else:
            progress.bad_epochs += 1
            if self.patience and progress.bad_epochs >= self.patience:
                log.info(
                    "early stopping: %s did not improve for %d epochs",
                    self.metric,
                    progress.bad_epochs,
                )
                result.stopped_early = True
        progress.epoch, progress.batches_done, progress.epoch_losses = progress.epoch + 1, 0, []
        return best_file

    def _restore(self, path: Path, model, optimizer, scheduler, scaler, ckpt_dir: Path):
        state, best = checkpoint.load(path, model)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        progress = _Progress(**state["progress"])
        result = TrainResult(**state["result"])
        best_file = None
        if best is not None:
            best_file = checkpoint.save_best(
                ckpt_dir, result.best_epoch, best, write=distributed.is_main()
            )
            distributed.barrier()
        log.info(
            "resumed from %s: epoch %d, batch %d, step %d",
            path,
            progress.epoch,
            progress.batches_done,
            progress.step,
        )
        return result, progress, best_file

    @torch.no_grad()
    def predict(self, model: torch.nn.Module, dataset, collator) -> np.ndarray:
        """Logits for every example, in dataset order (each process predicts its share)."""
        model.to(self.device).eval()
        out = []
        order = distributed.shard(list(range(len(dataset))))
        batches = [
            order[i : i + self.eval_batch_size] for i in range(0, len(order), self.eval_batch_size)
        ]
        for batch in tqdm(
            self._loader(dataset, collator, batches), desc="eval", leave=False, disable=None
        ):
            batch = {
                k: v.to(self.device, non_blocking=True) for k, v in batch.items() if k != "labels"
            }
            with self._autocast():
                out.append(model(**batch).logits.float().cpu())
        return distributed.gather_rows(torch.cat(out).numpy(), len(dataset))
