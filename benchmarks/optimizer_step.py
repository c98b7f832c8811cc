"""One AdamW step, three ways, side by side in one process: torch's loop over parameters
(`foreach=False`, torch's CPU default), `foreach=True` and `fused=True` (`optimizer.fused`).

    python -m benchmarks.optimizer_step [--steps 20] [--rounds 3] [--threads 1]

The run's own parameter groups (weight decay on matrices only) of the embedded
all-MiniLM-L6-v2 under the custom head, and of `backbone=tiny`, with random gradients; the
modes interleave round by round and each row is the median ms a step. Prints a Markdown table
with the CPU's model and flags.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

MODES = {"loop (foreach=False)": {"foreach": False}, "foreach": {"foreach": True}}
MODES["fused (optimizer.fused=true)"] = {"fused": True}


def step_ms(model, kwargs: dict, steps: int) -> float:
    import torch

    from src.trainers.optim import param_groups

    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4, **kwargs)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    for _ in range(2):  # the state is made at the first step
        optimizer.step()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1000


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.optimizer_step")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    from benchmarks.bench import machine
    from benchmarks.common import compose
    from src.trainers.build import make

    torch.set_num_threads(args.threads)
    models = {}
    for backbone in ("minilm", "tiny"):
        cfg = compose([f"backbone={backbone}"])
        models[backbone] = make(cfg.model).build(
            make(cfg.backbone), {0: "neg", 1: "pos"}, "single_label_classification"
        )
    times = {(b, m): [] for b in models for m in MODES}
    for _ in range(args.rounds):
        for (backbone, mode), out in times.items():
            out.append(step_ms(models[backbone], MODES[mode], args.steps))
    m = machine()
    print(
        f"`python -m benchmarks.optimizer_step --steps {args.steps} --rounds {args.rounds} "
        f"--threads {args.threads}` on {m['cpu']} ({m['cores']} cores, CPU flags "
        f"{' '.join(m['flags']) or 'none listed'}), torch {torch.__version__}:\n"
    )
    print("| backbone | parameters | " + " | ".join(f"{mode}, ms a step" for mode in MODES) + " |")
    print("|---|---|" + "---|" * len(MODES))
    for backbone, model in models.items():
        n = sum(p.numel() for p in model.parameters())
        cells = [f"{statistics.median(times[backbone, mode]):.1f}" for mode in MODES]
        print(f"| {backbone} | {n / 1e6:.1f}M | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
