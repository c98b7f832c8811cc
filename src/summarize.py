"""One table for a whole sweep: every job's overrides, metrics and status, best first.

    python -m src.summarize outputs/multirun/<time>    # on demand, also mid-sweep
    python -m src.summarize <sweep dir> --metric test_accuracy

A multirun writes the same files itself through `SweepSummary` (conf/config.yaml,
hydra.callbacks): <sweep dir>/summary.md, summary.csv and summary.png. A job is `finished`
when it wrote metrics.json (written last), `failed` when it left error.txt or status.json
says so, else `incomplete` (still running, preempted, or killed). No torch here: it reads
files and runs on a login node in a second.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import math
import re
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from src.errors import UserError
from src.metrics import CORE
from src.outputs import ERROR_FILE, METRICS_FILE, STATUS_FILE, write_atomic

log = logging.getLogger(__name__)

SUMMARY_MD = "summary.md"
SUMMARY_CSV = "summary.csv"
SUMMARY_PNG = "summary.png"
STATUS_ORDER = ("finished", "failed", "incomplete")


@dataclass
class Job:
    """One job folder of a sweep, as its files describe it."""

    name: str  # the folder, relative to the sweep dir
    overrides: dict[str, str]
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""


def read_job(folder: Path, sweep_dir: Path) -> Job:
    items = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text()) or []
    overrides = dict(item.split("=", 1) for item in items if "=" in item)
    name = folder.relative_to(sweep_dir).as_posix()
    metrics_file, error_file = folder / METRICS_FILE, folder / ERROR_FILE
    if metrics_file.is_file():
        return Job(name, overrides, "finished", _flat_metrics(json.loads(metrics_file.read_text())))
    if error_file.is_file():
        lines = error_file.read_text().strip().splitlines()
        return Job(name, overrides, "failed", error=lines[-1] if lines else "")
    status_file = folder / STATUS_FILE  # src.run's own record: running, failed or preempted
    status = json.loads(status_file.read_text()) if status_file.is_file() else {}
    state = "failed" if status.get("status") == "failed" else "incomplete"
    return Job(name, overrides, state, error=status.get("detail", ""))


def _flat_metrics(metrics: dict) -> dict[str, float]:
    """The numbers a sweep compares: best eval value of the chosen metric, test accuracy and f1,
    and any extra test metric (metrics.extra)."""
    flat = {k: float(v) for k, v in metrics.items() if k.startswith("best_eval_") and v is not None}
    test = metrics.get("test", {})
    for name in ("accuracy", "f1", *(k for k in test if k not in CORE)):
        if name in test:
            flat[f"test_{name}"] = float(test[name])
    return flat


def find_jobs(sweep_dir: Path) -> list[Job]:
    """Every folder under `sweep_dir` that Hydra made for a job (it holds .hydra/overrides.yaml)."""
    folders = {p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")}
    return [read_job(f, sweep_dir) for f in folders - {sweep_dir}]


def default_metric(jobs: list[Job]) -> str | None:
    """The best-eval metric the jobs returned to the sweeper (what Optuna maximises)."""
    return next((k for job in jobs for k in job.metrics if k.startswith("best_eval_")), None)


def sort_jobs(jobs: list[Job], metric: str | None) -> list[Job]:
    """Finished jobs best first by `metric` (higher is better), then failed, then incomplete;
    ties by name, job numbers compared as numbers ('10_lr=...' after '9_lr=...')."""

    def key(job: Job) -> tuple:
        value = job.metrics.get(metric, math.nan) if metric else math.nan
        by_metric = -value if not math.isnan(value) else math.inf
        natural = [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", job.name)]
        return STATUS_ORDER.index(job.status), by_metric, natural

    return sorted(jobs, key=key)


def swept_keys(jobs: list[Job]) -> tuple[list[str], dict[str, str]]:
    """Override keys whose value differs between jobs, and the overrides all jobs share."""
    keys = list(dict.fromkeys(k for job in jobs for k in job.overrides))
    swept = [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]
    shared = {k: jobs[0].overrides[k] for k in keys if k not in swept}
    return swept, shared


def metric_columns(jobs: list[Job], metric: str | None) -> list[str]:
    first = [metric] if metric else []
    return list(dict.fromkeys(first + [k for job in jobs for k in job.metrics]))


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(jobs: list[Job], keys: list[str], metrics: list[str], fmt=_fmt) -> list[list[str]]:
    """The header row, then one row per job; an error column only when some job has an error."""
    with_error = any(j.error for j in jobs)
    header = ["job", "status", *keys, *metrics] + (["error"] if with_error else [])
    return [header] + [
        [job.name, job.status]
        + [job.overrides.get(k, "") for k in keys]
        + [fmt(job.metrics[m]) if m in job.metrics else "" for m in metrics]
        + ([job.error] if with_error else [])
        for job in jobs
    ]


def to_csv(jobs: list[Job], metric: str | None) -> str:
    """Every override of every job (shared ones too), so the CSV stands alone."""
    swept, shared = swept_keys(jobs)
    metrics = metric_columns(jobs, metric)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(_table(jobs, swept + list(shared), metrics, fmt=repr))  # full precision
    return buffer.getvalue()


def to_markdown(jobs: list[Job], metric: str | None, title: str) -> str:
    """Swept overrides as columns; the ones every job shares on one line above the table."""
    swept, shared = swept_keys(jobs)
    header, *rows = _table(jobs, swept, metric_columns(jobs, metric))
    counts = ", ".join(f"{sum(j.status == s for j in jobs)} {s}" for s in STATUS_ORDER)
    lines = [f"# Sweep {title}", "", f"{len(jobs)} job{'s' * (len(jobs) != 1)}: {counts}."]
    if metric:
        lines.append(f"Sorted by `{metric}`, higher is better.")
    if shared:
        lines.append("Shared overrides: " + " ".join(f"`{k}={v}`" for k, v in shared.items()))
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def plot(jobs: list[Job], metric: str, path: Path) -> bool:
    """`metric` against each swept parameter, one panel each; False if there is nothing to plot."""
    swept, _ = swept_keys(jobs)
    done = [j for j in jobs if j.status == "finished" and metric in j.metrics]
    if not swept or not done:
        return False
    from matplotlib.figure import Figure  # lazy: a second to import

    fig = Figure(figsize=(4 * len(swept), 3.5), layout="constrained")
    for ax, key in zip(fig.subplots(1, len(swept), squeeze=False)[0], swept, strict=True):
        pairs = [(j.overrides.get(key, ""), j.metrics[metric]) for j in done]
        numbers = [_number(x) for x, _ in pairs]
        if all(n is not None for n in numbers):
            ax.scatter(numbers, [y for _, y in pairs])
            if min(numbers) > 0 and max(numbers) / min(numbers) >= 100:
                ax.set_xscale("log")  # learning rates span decades
        else:
            categories = sorted({x for x, _ in pairs})
            ax.scatter([categories.index(x) for x, _ in pairs], [y for _, y in pairs])
            ax.set_xticks(range(len(categories)), categories, rotation=20)
            ax.set_xlim(-0.5, len(categories) - 0.5)
        ax.set(xlabel=key, ylabel=metric)
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    return True


@contextlib.contextmanager
def _locked(sweep_dir: Path) -> Iterator[None]:
    """Parallel jobs (joblib, SLURM) rewrite the summary one at a time, so the last one wins."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; each file is still written atomically
        yield
        return
    with open(sweep_dir / ".summary.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def summarize(sweep_dir: Path, metric: str | None = None) -> list[Job]:
    """Write summary.md, summary.csv and summary.png into `sweep_dir`; return the sorted jobs."""
    sweep_dir = Path(sweep_dir)
    with _locked(sweep_dir):
        jobs = find_jobs(sweep_dir)
        columns = sorted({k for j in jobs for k in j.metrics})
        if metric and columns and metric not in columns:
            raise UserError(f"--metric {metric}: no job has it; use one of {', '.join(columns)}")
        metric = metric or default_metric(jobs)
        jobs = sort_jobs(jobs, metric)
        write_atomic(sweep_dir / SUMMARY_MD, to_markdown(jobs, metric, sweep_dir.name))
        write_atomic(sweep_dir / SUMMARY_CSV, to_csv(jobs, metric))
        if metric and jobs:
            plot(jobs, metric, sweep_dir / SUMMARY_PNG)
    return jobs


class SweepSummary(Callback):
    """Keeps <sweep dir>/summary.* current during a multirun; Hydra calls it from conf/config.yaml.

    The summary is rewritten after every job, not only at the end: Hydra skips
    `on_multirun_end` when a job failed (it re-raises that job's error), and a killed sweep
    never gets there, yet both deserve a table of what did run.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Before the sweeper starts, so that it can keep state there (Optuna's sqlite storage).
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        if job_return.status == JobStatus.FAILED:
            # _return_value holds the exception; the public accessor would re-raise it.
            error = job_return._return_value
            text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            write_atomic(Path(config.hydra.runtime.output_dir) / ERROR_FILE, text)
        summarize(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            jobs = summarize(sweep_dir)
            log.info("summary: %s, jobs: %d", sweep_dir / SUMMARY_MD, len(jobs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m src.summarize", description="Summarize a sweep folder (src.run -m)."
    )
    parser.add_argument("sweep_dir", type=Path, help="e.g. outputs/multirun/<time>")
    parser.add_argument("--metric", help="sort and plot by this column (default: best_eval_*)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a folder")
    try:
        summarize(args.sweep_dir, args.metric)
    except UserError as e:
        parser.error(str(e))
    print((args.sweep_dir / SUMMARY_MD).read_text(), end="")


if __name__ == "__main__":
    main()
