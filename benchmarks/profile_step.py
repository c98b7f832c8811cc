"""Where a training step's time goes: torch.profiler over the project's own loop.

    python -m benchmarks.profile_step [overrides ...]      # e.g. trainer.precision=bf16

Builds the run with src.trainers.build.build (backbone MiniLM, real reviews, the config's
max_length and
batch size), trains 2 warm-up steps, then profiles 3 steps of the manual loop's forward,
backward and optimizer step, and prints the operators that took the most CPU time.
"""

from __future__ import annotations

import sys

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import compose, use_shared_corpus
from src.trainers.build import build
from src.trainers.loggers import NullLogger

WARMUP, STEPS = 2, 3


def main(overrides: list[str]) -> None:
    use_shared_corpus()
    cfg = compose(["trainer=manual", "device=cpu", *overrides])
    built = build(cfg, NullLogger())
    trainer, model = built.trainer, built.model
    trainer.model, trainer.optimizer, trainer.scheduler = model, built.optimizer, built.scheduler
    trainer.ddp, trainer.net = None, model
    trainer.scaler = torch.amp.GradScaler("cuda", enabled=False)
    size = cfg.batch_size
    batches = [
        built.collator(built.encoded["train"][i : i + size])
        for i in range(0, (WARMUP + STEPS) * size, size)
    ]
    model.train()

    def step(batch: dict) -> None:
        with trainer._autocast():
            loss = model(**batch).loss
        loss.backward()
        trainer._optimizer_step()

    for batch in batches[:WARMUP]:
        step(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[WARMUP:]:
            step(batch)
    print(f"precision {trainer.precision}, overrides {overrides}")
    print(
        prof.key_averages().table(
            sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=48
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
