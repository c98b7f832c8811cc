"""`python -m src.compare`: two real tiny runs, their differing settings and their metrics."""

from __future__ import annotations

import csv
import io
import json
import shutil

from src import compare
from tests.conftest import run_cli


def test_two_runs_markdown(trained_runs):
    hf, manual = trained_runs["hf_head"], trained_runs["custom_head"]
    proc = run_cli(str(hf), str(manual), module="src.compare")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    settings = out.split("## Settings that differ")[1].split("## Metrics")[0]
    assert "- `epochs`: 1 -> 2" in settings
    assert "- `model._target_`: src.models.HFHead -> src.models.CustomHead" in settings
    assert "`seed`" not in settings and "`lr`" not in settings  # equal keys are left out
    a, b = (json.loads((p / "metrics.json").read_text()) for p in (hf, manual))
    row = next(line for line in out.splitlines() if line.startswith("| test accuracy |"))
    low, high = a["test_ci95"]["accuracy"]
    assert row.startswith(f"| test accuracy | {a['test']['accuracy']:.4f} [{low:.4f}, {high:.4f}]")
    assert f"| {b['test']['accuracy']:.4f} [" in row
    assert f"| best epoch | {a['best_epoch']} | {b['best_epoch']} |" in out
    assert f"| device | {a['device']} | {b['device']} |" in out


def test_csv_has_one_row_per_run(trained_runs):
    proc = run_cli(*map(str, trained_runs.values()), "--csv", module="src.compare")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["epochs"] for r in rows] == ["1", "2"]
    assert all(r["test accuracy"] and r["train s"] for r in rows)


def test_identical_configs_and_names_from_two_sweeps(trained_runs, tmp_path):
    """The same job folder name in two sweeps: the names carry the sweep folder."""
    a = tmp_path / "sweep_a" / "0_seed=1"
    b = tmp_path / "sweep_b" / "0_seed=1"
    for folder in (a, b):
        shutil.copytree(trained_runs["hf_head"], folder)
    runs = [compare.Run.read(a), compare.Run.read(b)]
    names = compare.short_names([a, b])
    assert names == ["sweep_a/0_seed=1", "sweep_b/0_seed=1"]
    assert "None: the resolved configs are identical." in compare.markdown(runs, names)


def test_three_runs_table_and_unfinished_folder(trained_runs, tmp_path):
    third = tmp_path / "third"
    shutil.copytree(trained_runs["custom_head"], third)
    proc = run_cli(*map(str, trained_runs.values()), str(third), module="src.compare")
    assert proc.returncode == 0, proc.stderr
    assert "| `epochs` | 1 | 2 | 2 |" in proc.stdout

    (third / "metrics.json").unlink()  # a run that has not finished
    proc = run_cli(str(trained_runs["hf_head"]), str(third), module="src.compare")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: {third.as_posix()}: not a finished run (no metrics.json); give a folder that "
        "`python -m src.run` completed (outputs/runs/<time> or a sweep's job folder)"
    ]
