"""`trainer=manual`: the notebook's hand-written loop, with what it lacked.

Read top to bottom: `fit` sets up, then each epoch trains (`_train_epoch`), evaluates and keeps
the best weights (`_evaluate`), and checkpoints (`_save`). All the loop knows lives in one
`LoopState`, which a checkpoint stores with the weights, optimizer, scheduler and RNG states, so
a killed or preempted run resumes exactly where it stopped. Mixed precision on CUDA only (and
bf16 on CPU when asked), gradient clipping and accumulation, DDP under torchrun.
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

from src.config.devices import autocast
from src.config.rundir import CHECKPOINTS_DIR
from src.tasks.inference import lengths_of
from src.trainers import checkpoint, distributed, optimizer_steps
from src.trainers.common import (
    BaseTrainer,
    MetricsFn,
    PreemptionGuard,
    TrainResult,
    check_batches,
    length_grouped,
    token_budget,
)
from src.trainers.forward import forward, on_device

log = logging.getLogger(__name__)

# Under DDP, ranks agree on a preemption signal every this many steps (one all-reduce), not at
# every step: a collective per step would stall the GPU queue like a per-step `.item()`.
SIGNAL_CHECK_STEPS = 10


@dataclass
class LoopState:
    """Everything the loop knows: where it is, what it has seen, and the best epoch so far."""

    epoch: int = 1  # the epoch in progress
    batches_done: int = 0  # batches of that epoch already trained on
    step: int = 0  # optimizer steps so far
    epoch_losses: list[float] = field(default_factory=list)  # this epoch's batch losses
    bad_epochs: int = 0  # epochs since the metric last improved
    best_file: str | None = None  # the best weights so far
    result: TrainResult = field(default_factory=TrainResult)

    @classmethod
    def from_dict(cls, saved: dict) -> LoopState:
        return cls(**{**saved, "result": TrainResult(**saved["result"])})


class ManualTrainer(BaseTrainer):
    @staticmethod
    def latest_checkpoint(folder: Path) -> Path | None:
        """The newest complete checkpoint of a run folder (or of its checkpoints/ folder)."""
        return checkpoint.latest(folder / CHECKPOINTS_DIR) or checkpoint.latest(folder)

    # --- fit: set up, then train / evaluate / save each epoch ---------------------------------

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
        self.model, self.optimizer, self.scheduler = model.to(self.device), optimizer, scheduler
        self.metrics_fn, self.collator = metrics_fn, collator
        self.ckpt_dir = output_dir / CHECKPOINTS_DIR
        self.ddp = None  # under torchrun, DDP syncs gradients across processes
        if distributed.world_size() > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.net = self.ddp or model  # what the training forward calls
        if self.config.compile:  # the training forward only; checkpoints and eval use the model
            self.net = torch.compile(self.net)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.state = LoopState()
        if resume_from is not None:
            self._restore(resume_from)

        with PreemptionGuard() as guard:
            while self.state.epoch <= self.config.epochs and not self.state.result.stopped_early:
                self._train_epoch(train_set, guard)
                self._evaluate(eval_set)
                self._save()
            if guard.requested:  # a signal during the last evaluation: stop all the same
                raise guard.stop(checkpoint.latest(self.ckpt_dir))
        result = self.state.result
        result.final_lr = self.scheduler.get_last_lr()[0]
        model.load_state_dict(checkpoint.load_file(self.state.best_file))
        best = f"epoch {result.best_epoch}, {self.metric}={result.best_metric:.4f}"
        log.info(f"restored the best weights: {best}")
        return result

    def _train_epoch(self, train_set, guard: PreemptionGuard) -> None:
        cfg, state = self.config, self.state
        batches = self._batches(train_set, state.epoch)
        steps = optimizer_steps(
            len(train_set), cfg.batch_size, cfg.grad_accum_steps, distributed.world_size()
        )
        forwards = self._forwards(train_set, batches, state.batches_done)
        loader = self._loader(train_set, [indices for indices, *_ in forwards])
        bar = tqdm(loader, desc=f"epoch {state.epoch}/{cfg.epochs}", leave=False, disable=None)
        # Batch losses stay on the device until logged or saved: an `.item()` per step would
        # make the host wait for the GPU at every step.
        losses: list[torch.Tensor] = []
        batch_loss: torch.Tensor | float = 0.0  # the forwards of this batch so far
        self.model.train()
        start = time.perf_counter()
        for (_, i, share, last), batch in zip(forwards, bar, strict=True):
            steps_now = last and ((i + 1) % cfg.grad_accum_steps == 0 or i + 1 == len(batches))
            with self._sync_gradients(steps_now), self._autocast():
                batch = self._to_device(batch)
                loss = self.loss(self.net(**batch), batch["labels"]) * share
            self.scaler.scale(loss / cfg.grad_accum_steps).backward()
            batch_loss = batch_loss + loss.detach()
            if not last:
                continue
            losses.append(batch_loss)
            batch_loss = 0.0
            if not steps_now:
                continue
            self._optimizer_step()
            state.step, state.batches_done = state.step + 1, i + 1
            if state.step % cfg.logging_steps == 0:
                self._log_step(losses, steps)
                bar.set_postfix(loss=f"{state.epoch_losses[-1]:.4f}")
            stop = self._signal_seen(guard)
            if stop or (cfg.save_steps and state.step % cfg.save_steps == 0):
                state.result.train_seconds += time.perf_counter() - start
                path = self._save(losses)
                if stop:
                    raise guard.stop(path)
                start = time.perf_counter()
        self._keep_losses(losses)
        state.result.train_seconds += time.perf_counter() - start
        state.result.train_samples += len(train_set)

    def _evaluate(self, eval_set) -> None:
        """Score the epoch, keep the best weights, decide on early stopping, move on."""
        state, result = self.state, self.state.result
        metrics = self.metrics_fn.evaluate(eval_set, self.backend(self.model, self.collator))
        train_loss = float(np.mean(state.epoch_losses))
        row = {"epoch": state.epoch, "step": state.step, "train_loss": train_loss, **metrics}
        result.history.append(row)
        self.logger.log({f"eval/{k}": v for k, v in metrics.items()}, state.step)
        scores = " ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float))
        log.info(f"epoch {state.epoch}/{self.config.epochs} {scores}")
        if self.improved(metrics[self.metric], result.best_metric):
            result.best_metric, result.best_epoch = metrics[self.metric], state.epoch
            state.bad_epochs = 0
            self._keep_best(checkpoint.cpu_state(self.model))
        else:
            state.bad_epochs += 1
            patience = self.config.early_stopping_patience
            if patience and state.bad_epochs >= patience:
                log.info(f"early stopping: {self.metric} did not improve for {patience} epochs")
                result.stopped_early = True
        if self.pruned(state.epoch, metrics[self.metric]):
            result.pruned = result.stopped_early = True
        state.epoch, state.batches_done, state.epoch_losses = state.epoch + 1, 0, []

    def _save(self, losses: list[torch.Tensor] | None = None) -> Path:
        """A checkpoint of the loop as it stands (rank 0 writes; every rank waits)."""
        self._keep_losses(losses or [])
        path = self.ckpt_dir / checkpoint.step_name(self.state.step)
        if distributed.is_main():
            best = Path(self.state.best_file) if self.state.best_file else None
            loop = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": checkpoint.rng_state(),
                "state": asdict(self.state),
            }
            weights = checkpoint.cpu_state(self.model)
            checkpoint.save(
                self.ckpt_dir, self.state.step, weights, best, loop, self.config.save_total_limit
            )
        distributed.barrier()
        return path

    def _restore(self, path: Path) -> None:
        saved, best = checkpoint.load(path, self.model)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        checkpoint.set_rng_state(saved["rng"])
        self.state = LoopState.from_dict(saved["state"])
        if best is not None:
            self._keep_best(best)
        at = f"epoch {self.state.epoch}, batch {self.state.batches_done}, step {self.state.step}"
        log.info(f"resumed from {path}: {at}")

    def _keep_best(self, weights: dict[str, torch.Tensor]) -> None:
        """The best weights so far, written once per improvement (rank 0; every rank waits)."""
        epoch, main = self.state.result.best_epoch, distributed.is_main()
        self.state.best_file = str(checkpoint.save_best(self.ckpt_dir, epoch, weights, main))
        distributed.barrier()

    # --- one step and its helpers ---------------------------------------------------------

    def _optimizer_step(self) -> None:
        self.step_lr = self.scheduler.get_last_lr()[0]  # the rate this step uses (as HF logs it)
        if self.config.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _sync_gradients(self, steps_now: bool):
        """DDP all-reduces gradients on the batch that completes a step, not while accumulating."""
        if self.ddp is None or steps_now:
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    def _signal_seen(self, guard: PreemptionGuard) -> bool:
        if distributed.world_size() == 1:
            return guard.requested
        if self.state.step % SIGNAL_CHECK_STEPS:
            return False
        return distributed.any_rank(guard.requested)

    def _keep_losses(self, losses: list[torch.Tensor]) -> None:
        """Move pending batch losses from the device into the epoch's list."""
        if losses:
            self.state.epoch_losses.extend(torch.stack(losses).float().cpu().tolist())
            losses.clear()

    def _log_step(self, losses: list[torch.Tensor], steps_per_epoch: int) -> None:
        self._keep_losses(losses)
        cfg, state = self.config, self.state
        window = state.epoch_losses[-cfg.logging_steps * cfg.grad_accum_steps :]
        loss, lr, epoch = (
            float(np.mean(window)),
            self.step_lr,
            round(state.step / steps_per_epoch, 4),
        )
        state.result.train_log.append({"step": state.step, "epoch": epoch, "loss": loss, "lr": lr})
        self.logger.log({"train/loss": loss, "train/learning_rate": lr}, state.step)
        log.info(f"step {state.step} loss {loss:.4f} lr {lr:.2e}")

    def _autocast(self):
        return autocast(self.device, self.precision)

    def _to_device(self, batch: dict) -> dict:
        return {k: on_device(v, self.device) for k, v in batch.items()}

    def _batches(self, train_set, epoch: int) -> list[list[int]]:
        """This rank's shuffled batches for `epoch`: a function of (seed, epoch) alone, so a
        resumed run sees the same order and can skip the batches it already trained on.
        `batch_size` is per process, as in transformers (global = batch_size x processes);
        with `group_by_length`, one optimizer step's examples are of similar length."""
        seed, size = self.config.seed, self.config.batch_size
        generator = torch.Generator().manual_seed(seed + epoch)
        order = torch.randperm(len(train_set), generator=generator).tolist()
        if self.config.group_by_length:
            rng = np.random.default_rng(seed + epoch)
            # one optimizer step's examples on every process (transformers' grouping too)
            step_size = size * self.config.grad_accum_steps * distributed.world_size()
            order = length_grouped(order, lengths_of(train_set), step_size, rng)
        mine = distributed.shard(order)
        return [mine[i : i + size] for i in range(0, len(mine), size)]

    def _forwards(
        self, train_set, batches: list[list[int]], done: int
    ) -> list[tuple[list[int], int, float, bool]]:
        """The forwards of batches `done`, `done` + 1, ...: each batch whole, or with
        `max_tokens` in parts under that budget (`token_budget`). Each forward is (its
        examples, its batch's number, its share of that batch's examples, whether it ends the
        batch): its mean loss times its share adds up to the batch's mean, so the gradients
        of the parts are the whole batch's."""
        budget = self.config.max_tokens
        if budget is None:
            return [(b, i, 1.0, True) for i, b in enumerate(batches[done:], start=done)]
        lengths, packed = lengths_of(train_set), self.config.padding_free
        out = []
        for i, batch in enumerate(batches[done:], start=done):
            parts = token_budget(batch, lengths, budget, packed)
            out += [(p, i, len(p) / len(batch), k == len(parts) - 1) for k, p in enumerate(parts)]
        return out

    def _loader(self, dataset, batch_sampler) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=self.collator,
            # its own generator: creating an iterator would otherwise draw from the global RNG,
            # and a resumed run would then see different dropout masks
            generator=torch.Generator().manual_seed(self.config.seed),
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def predict(self, model: torch.nn.Module, dataset, collator) -> np.ndarray:
        """Logits for every example, in dataset order: the torch backend of src.tasks.inference on
        this loop's device and precision, each process its share."""
        cfg = self.config
        return forward(
            model,
            dataset,
            collator,
            cfg.eval_batch_size,
            self.device,
            self.precision,
            cfg.num_workers,
        )
