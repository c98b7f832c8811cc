"""One table for a whole sweep: every job's overrides, metrics and status, best first.

    python -m src.summarize outputs/multirun/<time>    # on demand, also mid-sweep
    python -m src.summarize <sweep dir> --metric test_accuracy

A multirun writes the same files itself through `SweepSummary` (conf/config.yaml,
hydra.callbacks): <sweep dir>/summary.md, summary.csv and summary.png. A job is `finished`
when it wrote metrics.json (written last), `pruned` when it did so after an Optuna pruner stopped
it (status.json), `failed` when it left error.txt or status.json says so, else `incomplete`
(still running, preempted, or killed). No torch here: it reads
files and runs on a login node in a second.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.config.errors import UserError
from src.config.rundir import (
    BEST,
    MULTIRUN_FILE,
    STARTS,
    best_key,
    locked,
    read_metrics,
    write_atomic,
)
from src.outputs.render import interval, number, save_png
from src.outputs.trained import Job, natural, sweep_jobs
from src.sweeps import objectives
from src.tasks.metrics import higher_is_better

log = logging.getLogger(__name__)

SUMMARY_MD = "summary.md"
SUMMARY_CSV = "summary.csv"
SUMMARY_PNG = "summary.png"
SUMMARY_PARETO_PNG = "summary_pareto.png"  # a study of several objectives: its front
SEEDS_CSV = "summary_seeds.csv"  # one row per configuration when `seed` was swept
STATUS_ORDER = ("finished", "pruned", "failed", "incomplete")  # pruned: a study stopped it


def default_metric(jobs: list[Job]) -> str | None:
    """The best-eval metric the jobs returned to the sweeper (what Optuna maximises)."""
    return next((k for job in jobs for k in job.metrics if k.startswith(BEST)), None)


def better_higher(column: str) -> bool:
    """Which way a column improves: that of its metric (best_eval_<m>, test_<m>); a cost's
    (train_seconds, ...) lower."""
    if column in objectives.COSTS:
        return False
    return higher_is_better(re.sub(rf"^({BEST}|test_)", "", column))


def sort_jobs(jobs: list[Job], metric: str | None) -> list[Job]:
    """Finished jobs best first by `metric`, then failed, then incomplete; ties by name, job
    numbers compared as numbers ('10_lr=...' after '9_lr=...')."""
    sign = -1 if metric is None or better_higher(metric) else 1

    def key(job: Job) -> tuple:
        value = job.metrics.get(metric, math.nan) if metric else math.nan
        by_metric = sign * value if not math.isnan(value) else math.inf
        return STATUS_ORDER.index(job.status), by_metric, natural(job.name)

    return sorted(jobs, key=key)


# Overrides that say how a job was started, not what it is: a sweep run again with
# resume=auto gives it to the jobs it starts and not to those it skips, and the `start` column
# already says how each began. Never a swept column, nor a shared setting.
HOW_STARTED = ("resume",)


def swept_keys(jobs: list[Job]) -> tuple[list[str], dict[str, str]]:
    """Override keys whose value differs between jobs, and the overrides all jobs share."""
    keys = [
        k for k in dict.fromkeys(k for job in jobs for k in job.overrides) if k not in HOW_STARTED
    ]
    swept = [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]
    shared = {k: jobs[0].overrides[k] for k in keys if k not in swept}
    return swept, shared


def metric_columns(jobs: list[Job], metric: str | None) -> list[str]:
    first = [metric] if metric else []
    return list(dict.fromkeys(first + [k for job in jobs for k in job.metrics]))


def _table(jobs: list[Job], keys: list[str], metrics: list[str], for_csv: bool = False):
    """The header row, then one row per job; an error column only when some job has an error.
    A test metric's 95% interval follows its value in Markdown, in two columns in CSV."""
    with_error, with_start = any(j.error for j in jobs), restarted(jobs)
    ci = [m for m in metrics if any(m in j.ci for j in jobs)] if for_csv else []
    bounds = [f"{m}_ci95_{end}" for m in ci for end in ("low", "high")]
    header = ["job", "status", *(["start"] if with_start else []), *keys, *metrics, *bounds]
    header += ["error"] if with_error else []
    return [header] + [
        [job.name, job.status]
        + ([job.start] if with_start else [])
        + [job.overrides.get(k, "") for k in keys]
        + [_metric_cell(job, m, for_csv) for m in metrics]
        + [str(b) for m in ci for b in job.ci.get(m, ["", ""])]
        + ([job.error] if with_error else [])
        for job in jobs
    ]


def restarted(jobs: list[Job]) -> bool:
    """Whether the sweep was run again over its folder (some job skipped, resumed or rerun)."""
    return any(j.start not in ("", "fresh") for j in jobs)


def _metric_cell(job: Job, name: str, for_csv: bool) -> str:
    if name not in job.metrics:
        return ""
    if for_csv:
        return repr(job.metrics[name])  # full precision
    if name in objectives.COSTS:
        return objectives.shown(name, job.metrics[name])
    bounds = job.ci.get(name)
    return number(job.metrics[name]) + (f" {interval(bounds, digits=3)}" if bounds else "")


def to_csv(jobs: list[Job], metric: str | None) -> str:
    """Every override of every job (shared ones too), so the CSV stands alone."""
    swept, shared = swept_keys(jobs)
    metrics = metric_columns(jobs, metric)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(_table(jobs, swept + list(shared), metrics, for_csv=True))
    return buffer.getvalue()


def to_markdown(jobs: list[Job], metric: str | None, title: str) -> str:
    """Swept overrides as columns; the ones every job shares on one line above the table."""
    swept, shared = swept_keys(jobs)
    header, *rows = _table(jobs, swept, metric_columns(jobs, metric))
    counts = ", ".join(
        f"{n} {s}" for s in STATUS_ORDER if (n := sum(j.status == s for j in jobs)) or s != "pruned"
    )
    if restarted(jobs):  # what a rerun of the sweep did with each job
        counts += "; " + ", ".join(f"{sum(j.start == s for j in jobs)} {s}" for s in STARTS)
    lines = [f"# Sweep {title}", "", f"{len(jobs)} job{'s' * (len(jobs) != 1)}: {counts}."]
    if metric:
        lines.append(
            f"Sorted by `{metric}`, {'higher' if better_higher(metric) else 'lower'} is better."
        )
    if any(j.ci for j in jobs):
        lines.append("Test metrics: [95% interval], a bootstrap over each job's test examples.")
    if shared:
        lines.append("Shared overrides: " + " ".join(f"`{k}={v}`" for k, v in shared.items()))
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    if grouped := seeds_table(jobs, metric):
        header, *rows = grouped
        lines += ["", "## By configuration, over seeds", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def seed_groups(jobs: list[Job], metric: str | None) -> list[tuple[dict[str, str], list[Job]]]:
    """Finished jobs that differ only in `seed`, one group per configuration (its overrides
    without the seed), best mean first; none unless the sweep varied the seed."""
    done = [j for j in jobs if j.status == "finished"]
    if len({j.overrides.get("seed") for j in done}) < 2:
        return []
    groups: dict[tuple, list[Job]] = {}
    for job in done:
        key = tuple((k, v) for k, v in job.overrides.items() if k != "seed")
        groups.setdefault(key, []).append(job)
    ordered = [(dict(k), js) for k, js in groups.items()]
    sign = -1 if metric is None or better_higher(metric) else 1
    return sorted(ordered, key=lambda g: sign * (_stats(g[1], metric)[0] if metric else 0.0))


def _stats(jobs: list[Job], name: str) -> tuple[float, float, int]:
    """Mean, sample standard deviation (nan for one job) and count of a metric over jobs."""
    values = [j.metrics[name] for j in jobs if name in j.metrics]
    if not values:
        return math.nan, math.nan, 0
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else math.nan
    return mean, math.sqrt(var), len(values)


def seeds_table(jobs: list[Job], metric: str | None, for_csv: bool = False) -> list[list[str]]:
    """The header, then per configuration: its swept overrides, n, and mean ± std of each
    metric (CSV: separate mean and std columns, full precision)."""
    groups = seed_groups(jobs, metric)
    if not groups:
        return []
    keys = [k for k in swept_keys([j for _, js in groups for j in js])[0] if k != "seed"]
    metrics = metric_columns(jobs, metric)
    stats = [[_stats(js, m) for m in metrics] for _, js in groups]
    if for_csv:
        header = [*keys, "n", *(f"{m}_{s}" for m in metrics for s in ("mean", "std"))]
        cells = [[str(x) for mean, std, _ in row for x in (mean, std)] for row in stats]
    else:
        header = [*keys, "n", *(f"{m} (mean ± std)" for m in metrics)]
        cells = [[f"{mean:.4f} ± {std:.4f}" for mean, std, _ in row] for row in stats]
    return [header] + [
        [overrides.get(k, "") for k in keys] + [str(len(js))] + row
        for (overrides, js), row in zip(groups, cells, strict=True)
    ]


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def plot(jobs: list[Job], metric: str, path: Path) -> bool:
    """`metric` against each swept parameter, one panel each; False if there is nothing to plot."""
    swept, _ = swept_keys(jobs)
    done = [j for j in jobs if j.status in ("finished", "pruned") and metric in j.metrics]
    if not swept or not done:
        return False
    from matplotlib.figure import Figure  # lazy: a second to import

    groups = seed_groups(jobs, metric)
    fig = Figure(figsize=(4 * len(swept), 3.5), layout="constrained")
    for ax, key in zip(fig.subplots(1, len(swept), squeeze=False)[0], swept, strict=True):
        values = [j.overrides.get(key, "") for j in done]
        categories = sorted(set(values))
        numbers = [_number(x) for x in values]
        if all(n is not None for n in numbers):
            where = _number
            if min(numbers) > 0 and max(numbers) / min(numbers) >= 100:
                ax.set_xscale("log")  # learning rates span decades
        else:
            where = categories.index
            ax.set_xticks(range(len(categories)), categories, rotation=20)
            ax.set_xlim(-0.5, len(categories) - 0.5)
        for state, marker in (("finished", "o"), ("pruned", "x")):  # pruned: its best so far
            shown = [
                (where(x), j.metrics[metric])
                for x, j in zip(values, done, strict=True)
                if j.status == state
            ]
            if shown:
                ax.scatter(*zip(*shown, strict=True), marker=marker, alpha=0.6, label=state)
        if any(j.status == "pruned" for j in done):
            ax.legend(fontsize="small")
        if groups and key != "seed":  # each configuration's mean ± std over its seeds
            stats = [(where(o.get(key, "")), *_stats(js, metric)[:2]) for o, js in groups]
            xs, means, stds = zip(*stats, strict=True)
            ax.errorbar(
                xs,
                means,
                yerr=[0 if math.isnan(s) else s for s in stds],
                fmt="D",
                color="black",
                capsize=4,
                label="mean ± std over seeds",
            )
            ax.legend(fontsize="small")
        ax.set(xlabel=key, ylabel=metric)
        ax.grid(alpha=0.3)
    save_png(fig, path, dpi=100)
    return True


def sorted_jobs(sweep_dir: Path, metric: str | None) -> tuple[list[Job], str | None]:
    """The sweep's jobs, sorted by `metric` (default: the best-eval metric), and that metric.
    A study of several objectives: each finished job's costs are among its metrics."""
    jobs = sweep_jobs(sweep_dir)
    with_costs(sweep_dir, jobs)
    columns = sorted({k for j in jobs for k in j.metrics})
    if metric and columns and metric not in columns:
        raise UserError(f"--metric {metric}: no job has it; use one of {', '.join(columns)}")
    metric = metric or default_metric(jobs)
    return sort_jobs(jobs, metric), metric


# --- a study of several objectives: its Pareto front ------------------------------------------


@dataclass
class Front:
    """A study's objectives (src.sweeps.objectives) as summary columns, their directions, and
    the finished jobs no other beats on all of them, cheapest first."""

    columns: list[str]  # best_eval_<metric>, then the costs as metrics.json names them
    directions: list[str]
    jobs: list[Job]


def study_objectives(sweep_dir: Path) -> tuple[list[str], str] | None:
    """The objectives a study of several was started with (its multirun.yaml), and its metric."""
    path = sweep_dir / MULTIRUN_FILE
    if not path.is_file():
        return None
    config = OmegaConf.load(path)
    found = OmegaConf.select(config, "hydra.sweeper.objectives", default=None)
    metric = OmegaConf.select(config, "trainer.metric_for_best_model", default=None)
    if found is None or metric is None:
        return None
    names = [found] if isinstance(found, str) else [str(n) for n in found]
    return (names, str(metric)) if len(names) > 1 else None


def with_costs(sweep_dir: Path, jobs: list[Job]) -> None:
    """A study of several objectives: each finished job's costs join its metrics (columns)."""
    found = study_objectives(sweep_dir)
    if found is None:
        return
    names, metric = found
    for job in (j for j in jobs if j.status == "finished"):
        values = objectives.values_of(read_metrics(sweep_dir / job.name), names, metric)
        job.metrics.update(
            {n: v for n, v in zip(names, values, strict=True) if n != metric and v is not None}
        )


def pareto(sweep_dir: Path, jobs: list[Job]) -> Front | None:
    """The front of a study of several objectives (None for any other sweep), from the jobs'
    metrics (`sorted_jobs` put their costs there)."""
    found = study_objectives(sweep_dir)
    if found is None:
        return None
    names, metric = found
    done = [j for j in jobs if j.status == "finished"]
    columns = [best_key(metric) if n == metric else n for n in names]
    directions = objectives.directions_of(names)
    points = [[j.metrics.get(c, math.nan) for c in columns] for j in done]
    front = [done[i] for i in objectives.pareto_front(points, directions)]
    cheapest = columns[1] if columns[0] == best_key(metric) else columns[0]
    return Front(columns, directions, sorted(front, key=lambda j: j.metrics[cheapest]))


def front_markdown(front: Front, jobs: list[Job]) -> list[str]:
    """The front as a table: which settings are best at each budget."""
    swept, _ = swept_keys(jobs)
    done = sum(j.status == "finished" for j in jobs)
    ways = ", ".join(
        f"`{c}` {'higher' if d == 'maximize' else 'lower'}"
        for c, d in zip(front.columns, front.directions, strict=True)
    )
    header = ["job", *swept, *front.columns]
    lines = [
        "",
        "## Pareto front",
        "",
        f"{len(front.jobs)} of {done} finished job{'s' * (done != 1)}: no other job is as good "
        f"on every objective and better on one ({ways} is better). Cheapest first: each row "
        "is the best at its budget. Plot: summary_pareto.png.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for job in front.jobs:
        cells = [job.name, *(job.overrides.get(k, "") for k in swept)]
        cells += [objectives.shown(c, job.metrics[c]) for c in front.columns]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def plot_front(front: Front, jobs: list[Job], path: Path) -> bool:
    """The metric against each cost, one panel each: every finished job, the front's jobs
    marked, and the best metric at each budget of that cost as a step (False: nothing to
    plot)."""
    done = [j for j in jobs if j.status == "finished"]
    metric, costs = front.columns[0], front.columns[1:]
    if not done or not costs:
        return False
    from matplotlib.figure import Figure  # lazy: a second to import

    fig = Figure(figsize=(4.5 * len(costs), 3.8), layout="constrained")
    for ax, cost in zip(fig.subplots(1, len(costs), squeeze=False)[0], costs, strict=True):
        points = [(j.metrics[cost], j.metrics[metric]) for j in done if cost in j.metrics]
        if not points:
            continue
        ax.scatter(*zip(*points, strict=True), color="tab:blue", alpha=0.5, label="finished")
        marked = [(j.metrics[cost], j.metrics[metric]) for j in front.jobs if cost in j.metrics]
        ax.scatter(*zip(*marked, strict=True), marker="D", color="black", label="Pareto front")
        ways = [front.directions[0], "minimize"]
        flat = [list(p)[::-1] for p in points]  # (metric, cost), as the front's columns are
        best = sorted(points[i] for i in objectives.pareto_front(flat, ways))
        ax.step(*zip(*best, strict=True), where="post", color="black", alpha=0.6)
        xs = [x for x, _ in points]
        if min(xs) > 0 and max(xs) >= 100 * min(xs):
            ax.set_xscale("log")
        ax.set(xlabel=f"{cost} (lower is better)", ylabel=metric)
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    save_png(fig, path, dpi=100)
    return True


def report(sweep_dir: Path, metric: str | None) -> tuple[list[Job], str | None, Front | None, str]:
    """summary.md's text (src.summarize prints it): the jobs sorted by `metric`, and a study
    of several objectives' front below them."""
    jobs, metric = sorted_jobs(sweep_dir, metric)
    front = pareto(sweep_dir, jobs)
    text = to_markdown(jobs, metric, sweep_dir.name)
    if front is not None:
        text += "\n".join(front_markdown(front, jobs)) + "\n"
    return jobs, metric, front, text


def summarize(sweep_dir: Path, metric: str | None = None) -> list[Job]:
    """Write summary.md, summary.csv and summary.png into `sweep_dir` (a study of several
    objectives: its Pareto front too, and summary_pareto.png); return the sorted jobs."""
    sweep_dir = Path(sweep_dir)
    with locked(sweep_dir / ".summary.lock"):  # parallel jobs rewrite it one at a time
        jobs, metric, front, text = report(sweep_dir, metric)
        if front is not None:
            plot_front(front, jobs, sweep_dir / SUMMARY_PARETO_PNG)
        write_atomic(sweep_dir / SUMMARY_MD, text)
        write_atomic(sweep_dir / SUMMARY_CSV, to_csv(jobs, metric))
        if grouped := seeds_table(jobs, metric, for_csv=True):
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerows(grouped)
            write_atomic(sweep_dir / SEEDS_CSV, buffer.getvalue())
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

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        summarize(Path(config.hydra.sweep.dir))  # a failed job wrote its error.txt itself

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            jobs = summarize(sweep_dir)
            log.info("summary: %s, jobs: %d", sweep_dir / SUMMARY_MD, len(jobs))
