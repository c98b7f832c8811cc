"""The sweep summary over hand-made job folders: statuses, order, files, the CLI (no training)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from src.summarize import main as summarize_main
from src.sweeps import summary
from tests.conftest import ROOT, command_exit


def _job(sweep: Path, name: str, overrides: list[str], f1: float | None = None, error: str = ""):
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if f1 is not None:
        metrics = {"test": {"accuracy": f1 + 0.1, "f1": f1}, "best_eval_f1": f1}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    if error:
        (folder / "error.txt").write_text(f"Traceback (most recent call last):\n{error}\n")


@pytest.fixture
def sweep(tmp_path) -> Path:
    _job(tmp_path, "0_lr=1e-5", ["debug=smoke", "lr=1e-5"], f1=0.5)
    _job(tmp_path, "1_lr=1e-4", ["debug=smoke", "lr=1e-4"], f1=0.8)
    _job(tmp_path, "2_lr=1e-3", ["debug=smoke", "lr=1e-3"], error="ValueError: lr too big")
    _job(tmp_path, "3_lr=1e-2", ["debug=smoke", "lr=1e-2"])  # running, or killed
    _job(tmp_path, "10_lr=3e-4", ["debug=smoke", "lr=3e-4"], f1=0.7)
    return tmp_path


def test_statuses_and_order(sweep):
    jobs = summary.summarize(sweep)
    assert [(j.name, j.status) for j in jobs] == [
        ("1_lr=1e-4", "finished"),
        ("10_lr=3e-4", "finished"),
        ("0_lr=1e-5", "finished"),
        ("2_lr=1e-3", "failed"),
        ("3_lr=1e-2", "incomplete"),
    ]
    assert jobs[3].error == "ValueError: lr too big"
    assert jobs[0].metrics == {"best_eval_f1": 0.8, "test_accuracy": 0.9, "test_f1": 0.8}


def test_files(sweep):
    summary.summarize(sweep)
    md = (sweep / "summary.md").read_text()
    assert "5 jobs: 3 finished, 1 failed, 1 incomplete." in md
    assert "Shared overrides: `debug=smoke`" in md
    assert "| job | status | lr | best_eval_f1 | test_accuracy | test_f1 | error |" in md
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["lr"] for r in rows] == ["1e-4", "3e-4", "1e-5", "1e-3", "1e-2"]
    assert rows[0]["debug"] == "smoke" and float(rows[0]["best_eval_f1"]) == 0.8
    assert rows[4]["status"] == "incomplete" and rows[4]["best_eval_f1"] == ""
    assert (sweep / "summary.png").read_bytes()[:4] == b"\x89PNG"


def test_sort_by_another_metric(sweep):
    _job(sweep, "4_lr=2e-4", ["debug=smoke", "lr=2e-4"], f1=0.6)
    (sweep / "4_lr=2e-4" / "metrics.json").write_text(
        json.dumps({"test": {"accuracy": 0.99, "f1": 0.6}, "best_eval_f1": 0.6})
    )
    jobs = summary.summarize(sweep, metric="test_accuracy")
    assert jobs[0].name == "4_lr=2e-4"


def test_nothing_to_plot(tmp_path):
    _job(tmp_path, "0_debug=smoke", ["debug=smoke"], f1=0.5)
    jobs = summary.summarize(tmp_path)
    assert len(jobs) == 1 and "1 job: 1 finished" in (tmp_path / "summary.md").read_text()
    assert not (tmp_path / "summary.png").exists()


def test_cli_prints_and_writes_nothing(sweep, capsys):
    summary.summarize(sweep)  # the sweep's own files, as the running sweep left them
    written = {p.name: p.read_bytes() for p in sweep.glob("summary.*")}
    proc = subprocess.run(
        [sys.executable, "-m", "src.summarize", str(sweep), "--metric", "test_accuracy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    jobs, _ = summary.sorted_jobs(sweep, "test_accuracy")
    assert proc.stdout == summary.to_markdown(jobs, "test_accuracy", sweep.name)
    assert {p.name: p.read_bytes() for p in sweep.glob("summary.*")} == written
    code, err = command_exit(summarize_main, str(sweep), "--metric", "nope", capsys=capsys)
    assert code == 2 and err.startswith("error: --metric nope: no job has it")


@pytest.mark.parametrize(
    ("make", "line"),
    [
        (lambda d: _job(d.parent, d.name, ["lr=1"], f1=0.5), "a training run, not a sweep"),
        (lambda d: d.mkdir(), "no sweep jobs in it"),
        (lambda d: None, "no such folder"),
    ],
)
def test_a_folder_that_is_no_sweep_is_one_line_exit_2(tmp_path, capsys, make, line):
    folder = tmp_path / "x"
    make(folder)
    code, err = command_exit(summarize_main, str(folder), capsys=capsys)
    assert code == 2 and err.startswith(f"error: {folder}: {line}") and err.count("\n") == 1
    assert not list(tmp_path.rglob("summary.*"))


def test_no_torch_import():
    """The summary runs where torch is not installed (a login node) and starts in a blink."""
    code = "import sys, src.sweeps.summary; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_jobs_that_differ_only_in_seed_are_grouped(tmp_path):
    """A -m seed=1,2,3 sweep over two learning rates: one row per lr with mean ± std and n,
    in summary.md, summary_seeds.csv and the plot; the per-job rows stay."""
    f1s = {("1e-4", "1"): 0.80, ("1e-4", "2"): 0.84, ("1e-4", "3"): 0.82, ("1e-3", "1"): 0.6}
    for n, ((lr, seed), f1) in enumerate(f1s.items()):
        _job(tmp_path, f"{n}_lr={lr},seed={seed}", ["debug=smoke", f"lr={lr}", f"seed={seed}"], f1)
    jobs = summary.summarize(tmp_path)
    assert len(jobs) == 4
    rows = list(csv.DictReader((tmp_path / summary.SEEDS_CSV).open()))
    assert [(r["lr"], r["n"]) for r in rows] == [("1e-4", "3"), ("1e-3", "1")]  # best mean first
    assert float(rows[0]["best_eval_f1_mean"]) == pytest.approx(0.82)
    assert float(rows[0]["best_eval_f1_std"]) == pytest.approx(0.02)  # sample std of .80 .84 .82
    assert rows[1]["best_eval_f1_std"] == "nan"  # one seed: no spread to report
    text = (tmp_path / summary.SUMMARY_MD).read_text()
    assert "## By configuration, over seeds" in text
    assert "| 1e-4 | 3 | 0.8200 ± 0.0200 |" in text
    assert (tmp_path / summary.SUMMARY_PNG).stat().st_size > 0


def test_no_seed_table_without_a_seed_sweep(sweep):
    summary.summarize(sweep)
    assert not (sweep / summary.SEEDS_CSV).exists()
    assert "over seeds" not in (sweep / summary.SUMMARY_MD).read_text()


def test_test_intervals_in_the_summary(tmp_path):
    _job(tmp_path, "0_lr=1", ["lr=1"], f1=0.8)
    _job(tmp_path, "1_lr=2", ["lr=2"], f1=0.7)
    metrics_file = tmp_path / "0_lr=1" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics["test_ci95"] = {"accuracy": [0.85, 0.95], "f1": [0.75, 0.85]}
    metrics_file.write_text(json.dumps(metrics))
    summary.summarize(tmp_path)
    assert "0.8000 [0.750, 0.850]" in (tmp_path / summary.SUMMARY_MD).read_text()
    row = next(csv.DictReader((tmp_path / summary.SUMMARY_CSV).open()))
    assert (row["test_f1_ci95_low"], row["test_f1_ci95_high"]) == ("0.75", "0.85")


def test_resume_is_how_a_job_started_not_a_swept_setting():
    """A sweep run again with resume=auto: the jobs it started carry resume=auto, those it
    skipped do not; the summary's columns are still only what the user swept."""
    from src.outputs.trained import Job

    jobs = [
        Job("0_lr=1", {"lr": "1", "seed": "3"}, "finished", start="skipped"),
        Job("1_lr=2", {"lr": "2", "seed": "3", "resume": "auto"}, "finished", start="resumed"),
    ]
    assert summary.swept_keys(jobs) == (["lr"], {"seed": "3"})
    header = summary.to_csv(jobs, None).splitlines()[0].split(",")
    assert "lr" in header and "resume" not in header
