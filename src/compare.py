"""Compare finished runs: which resolved settings differ, and what that did to the metrics.

    python -m src.compare RUN_A RUN_B [RUN_C ...]          # Markdown, ready for a PR
    python -m src.compare RUN_A RUN_B --csv                # one row per run

A run is any folder `python -m src.run` finished (metrics.json), from `outputs/runs/` or a job
folder of a sweep, from any sweep, or its best_model/; folders are opened through
src.outputs.trained. No torch loads. A folder of `python -m src.evaluate` is compared as the
run it scored (that run's settings; an export's are its run's) on the dataset it was scored
on, and the list of
folders says which kind each is. An export has no test metrics of its own: evaluate it, then
compare the evaluation.

Runs scored on the same test examples (the same texts in the same order: metrics.json's
`test_sha256`) of the same task get a paired test, each against the first: B - A for each of
the task's metrics with a 95% paired-bootstrap interval, McNemar's exact p-value for the
per-example exact metric (accuracy; subset accuracy for multi-label; none for regression),
and a verdict.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.config import cli
from src.config.errors import run_command
from src.config.rundir import best_eval, best_key
from src.outputs import render
from src.outputs.render import cell, number
from src.outputs.results import read_predictions
from src.outputs.trained import open_scored
from src.tasks.metrics import PairedDifference, paired_differences, task_of
from src.tasks.task import task_class

ABSENT = "<absent>"
# (label, metrics.json path) of what a reader compares after the test metrics, in this order
FACTS = (
    ("best epoch", ("best_epoch",)),
    ("chosen on", ("eval_split",)),
    ("train s", ("train_seconds",)),
    ("run s", ("seconds", "total")),
    ("train samples/s", ("train_samples_per_second",)),
    ("device", ("device",)),
    ("compute precision", ("precision",)),  # fp32, bf16: not the metric
    ("train examples", ("n_train",)),
    ("test examples", ("n_test",)),
)


@dataclass
class Run:
    name: str
    config: dict[str, Any]  # dotted keys of the resolved config that made its results
    metrics: dict[str, Any]  # metrics.json
    what: str = "a training run"  # or "an evaluation of `<folder>` (its settings shown)"

    @classmethod
    def read(cls, folder: Path) -> Run:
        """A finished run; or an evaluation, compared as the run it scored (that run's
        settings) on the dataset it was scored on, so that like is set against like."""
        found = open_scored(folder)
        return cls(found.path.as_posix(), found.settings, found.metrics, found.what)

    def get(self, path: tuple[str, ...]) -> Any:
        value: Any = self.metrics
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value


def short_names(folders: list[Path]) -> list[str]:
    """The shortest trailing paths that tell the runs apart (a job folder's name repeats
    across sweeps: `0_lr=0.0001` in two sweeps becomes `<sweep>/0_lr=0.0001`)."""
    parts = [f.resolve().parts for f in folders]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [f.as_posix() for f in folders]


def differences(runs: list[Run]) -> dict[str, list[Any]]:
    """Dotted key -> each run's value, for the keys whose values are not all equal."""
    keys = list(dict.fromkeys(k for run in runs for k in run.config))
    diff = {}
    for key in keys:
        values = [run.config.get(key, ABSENT) for run in runs]
        if any(v != values[0] for v in values[1:]):
            diff[key] = values
    return diff


def test_cell(run: Run, name: str) -> str:
    """A test metric with its 95% interval when the run has one."""
    value, interval = run.get(("test", name)), run.get(("test_ci95", name))
    if value is None:
        return "-"
    return number(value) + (f" {render.interval(interval)}" if interval else "")


def metric_rows(runs: list[Run]) -> list[tuple[str, list[str]]]:
    """The comparison's rows: test metrics with intervals, the best eval value, then facts."""
    tested = dict.fromkeys(k for run in runs for k in run.metrics.get("test", {}))
    names = list(tested)  # each run's task's metrics, in the task's order
    best = sorted({chosen[0] for run in runs if (chosen := best_eval(run.metrics))})
    rows = [(f"test {k}", [test_cell(run, k) for run in runs]) for k in names]
    rows += [(f"best eval {m}", [number(run.get((best_key(m),))) for run in runs]) for m in best]
    rows += [(label, [number(run.get(path)) for run in runs]) for label, path in FACTS]
    if any(run.metrics.get("warnings") for run in runs):  # a model that predicts one thing
        rows.append(
            ("warning", ["; ".join(run.metrics.get("warnings") or []) or "-" for run in runs])
        )
    return rows


def markdown(runs: list[Run], names: list[str]) -> str:
    diff = differences(runs)
    lines = ["# Runs compared", ""]
    lines += [
        f"- **{name}**: `{run.name}`, {run.what}" for name, run in zip(names, runs, strict=True)
    ]
    lines += ["", "## Settings that differ", ""]
    if not diff:
        lines.append("None: the resolved configs are identical.")
    elif len(runs) == 2:
        lines += [f"- `{key}`: {number(a)} -> {number(b)}" for key, (a, b) in diff.items()]
    else:
        lines += ["| key | " + " | ".join(names) + " |", "|---|" + "---|" * len(runs)]
        lines += [f"| `{k}` | " + " | ".join(map(cell, v)) + " |" for k, v in diff.items()]
    lines += ["", "## Metrics", "", "| | " + " | ".join(names) + " |"]
    lines.append("|---|" + "---|" * len(runs))
    lines += [
        f"| {label} | " + " | ".join(map(cell, cells)) + " |" for label, cells in metric_rows(runs)
    ]
    lines += ["", "Test metrics: [95% interval], a bootstrap over each run's test examples."]
    lines += ["", f"## Paired tests, against {names[0]}", ""]
    for name, run in zip(names[1:], runs[1:], strict=True):
        found = paired(runs[0], run)
        if isinstance(found, str):
            lines.append(f"- **{name}**: no paired test: {found}")
            continue
        n = run.metrics["n_test"]
        lines.append(f"- **{name}** minus {names[0]}, on the same {n} test examples:")
        lines += [f"  - {verdict(d, name)}" for d in found]
    return "\n".join(lines) + "\n"


def paired(a: Run, b: Run) -> list[PairedDifference] | str:
    """B - A on the test examples both were scored on, or why there is no paired test."""
    fingerprints = [run.metrics.get("test_sha256") for run in (a, b)]
    if not all(fingerprints):
        return "a run records no fingerprint of its test texts (made before paired tests)"
    if fingerprints[0] != fingerprints[1]:
        return "the runs were tested on different texts (another split, dataset or order)"
    if task_of(a.metrics) != task_of(b.metrics):
        return f"the runs learnt different tasks ({task_of(a.metrics)}, {task_of(b.metrics)})"
    if a.metrics["label_names"] != b.metrics["label_names"]:
        return "the runs have different labels"
    names, kind = a.metrics["label_names"], task_class(task_of(a.metrics))()
    (labels, preds_a), (labels_b, preds_b) = (read_predictions(Path(r.name)) for r in (a, b))
    if labels != labels_b:
        return "the runs' test_predictions.csv hold different labels"
    truth, a_preds, b_preds = (
        kind.read_cells(cells, names) for cells in (labels, preds_a, preds_b)
    )
    return paired_differences(truth, a_preds, b_preds, len(names), task=kind.NAME)


def verdict(d: PairedDifference, name: str) -> str:
    """`accuracy +0.020 [-0.015, +0.055], McNemar p = 0.31: not distinguishable`."""
    line = f"{d.metric} {d.difference:+.3f} [{d.interval[0]:+.3f}, {d.interval[1]:+.3f}]"
    if d.p_value is not None:
        line += f", McNemar p = {d.p_value:.2g}"
    if not d.distinguishable:
        return f"{line}: not distinguishable"
    return f"{line}: {name} is {'better' if d.b_is_better else 'worse'}"


def to_csv(runs: list[Run], names: list[str]) -> str:
    """One row per run: its name and folder, each differing setting, each metric."""
    diff, rows = differences(runs), metric_rows(runs)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run", "folder", *diff, *(label for label, _ in rows)])
    for i, (name, run) in enumerate(zip(names, runs, strict=True)):
        values = [number(v[i]) for v in diff.values()]
        writer.writerow([name, run.name, *values, *(cells[i] for _, cells in rows)])
    return out.getvalue()


def main(argv: list[str]) -> None:
    summary = __doc__.split("\n")[0]
    parser = cli.ArgumentParser(prog="python -m src.compare", description=summary)
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders (two or more)")
    parser.add_argument("--csv", action="store_true", help="one CSV row per run, not Markdown")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("give two or more run folders")
    runs = [Run.read(folder) for folder in args.runs]
    names = short_names(args.runs)
    sys.stdout.write(to_csv(runs, names) if args.csv else markdown(runs, names))


if __name__ == "__main__":
    run_command(main)
