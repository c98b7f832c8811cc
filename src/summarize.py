"""Print a sweep's summary: `python -m src.summarize <sweep dir> [--metric M]`.

The table every job of a sweep or study writes as it ends (src/sweeps/summary.py: summary.md,
summary.csv, summary.png; a study of several objectives: its Pareto front too), printed on
demand, also mid-sweep, sorted by another column if asked (a study's cost objective too:
--metric train_seconds).
No torch here: it reads files and runs on a login node in a second.
"""

from __future__ import annotations

from pathlib import Path

from src.config import cli
from src.config.errors import run_command
from src.outputs.trained import open_sweep
from src.sweeps.summary import report


def main(argv: list[str]) -> None:
    """Print the sweep's summary, sorted by --metric; writes nothing (the sweep keeps its
    summary.* files, which a running sweep rewrites after each job)."""
    parser = cli.ArgumentParser(
        prog="python -m src.summarize", description="Print the summary of a sweep folder."
    )
    parser.add_argument("sweep_dir", type=Path, help="e.g. outputs/multirun/<time>")
    parser.add_argument("--metric", help="sort by this column (default: best_eval_*)")
    args = parser.parse_args(argv)
    open_sweep(args.sweep_dir)  # a run, or no such folder: one line
    print(report(args.sweep_dir, args.metric)[-1], end="")


if __name__ == "__main__":
    run_command(main)
