"""`python -m src.compare`: two real tiny runs, their differing settings and their metrics."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil

import numpy as np
import pytest

from src import compare
from tests.conftest import copy_run, run_cli


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
    config = (third / "config_resolved.yaml").read_text()  # a setting whose value is `|`:
    (third / "config_resolved.yaml").write_text(
        config.replace("dataset:\n", "dataset:\n  label_separator: '|'\n", 1)
    )
    proc = run_cli(*map(str, trained_runs.values()), str(third), module="src.compare")
    assert proc.returncode == 0, proc.stderr
    assert "| `epochs` | 1 | 2 | 2 |" in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if "`dataset.label_separator`" in line)
    assert row.endswith(" | \\| |") and len(re.split(r"(?<!\\)\|", row)) == 6  # 4 cells, escaped

    (third / "metrics.json").unlink()  # a run that has not finished
    proc = run_cli(str(trained_runs["hf_head"]), str(third), module="src.compare")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: {third.as_posix()}: not a finished run (no metrics.json); give a folder that "
        "`python -m src.run` completed (outputs/runs/<time> or a sweep's job folder)"
    ]


def test_paired_test_of_two_real_runs(trained_runs):
    """Both tiny runs were tested on the smoke run's 32 test reviews (the fingerprint says so):
    each core metric's difference, the paired interval and McNemar's p from their predictions."""
    from scipy.stats import binomtest

    from src import data
    from src.outputs.results import texts_sha256

    hf, manual = trained_runs["hf_head"], trained_runs["custom_head"]
    a, b = (json.loads((p / "metrics.json").read_text()) for p in (hf, manual))
    split = data.MovieReviews(max_train_samples=48, max_eval_samples=32).load().test
    assert a["test_sha256"] == b["test_sha256"] == texts_sha256(split.texts)
    proc = run_cli(str(hf), str(manual), module="src.compare")
    assert proc.returncode == 0, proc.stderr
    first, second = compare.short_names([hf, manual])
    section = proc.stdout.split(f"## Paired tests, against {first}")[1].strip().splitlines()
    assert section[0] == f"- **{second}** minus {first}, on the same 32 test examples:"
    assert [line.split()[1] for line in section[1:]] == ["accuracy", "precision", "recall", "f1"]
    rows = [list(csv.DictReader((p / "test_predictions.csv").open())) for p in (hf, manual)]
    right = [[r["label"] == r["prediction"] for r in run] for run in rows]
    only_a = sum(x and not y for x, y in zip(*right, strict=True))
    only_b = sum(y and not x for x, y in zip(*right, strict=True))
    p = binomtest(only_b, only_a + only_b).pvalue if only_a + only_b else 1.0
    difference = b["test"]["accuracy"] - a["test"]["accuracy"]
    assert section[1].startswith(f"  - accuracy {difference:+.3f} [")
    assert f", McNemar p = {p:.2g}: " in section[1]


def test_paired_differences_tell_a_real_gap_from_noise():
    from src.tasks.metrics import mcnemar, paired_differences

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    a = np.where(rng.random(400) < 0.7, labels, 1 - labels)  # about 70% right
    b = np.where(rng.random(400) < 0.67, labels, a)  # B fixes two thirds of A's mistakes
    found = {d.metric: d for d in paired_differences(labels, a, b, 2)}
    acc = found["accuracy"]
    assert acc.difference == pytest.approx(np.mean(b == labels) - np.mean(a == labels))
    assert 0 < acc.interval[0] < acc.difference < acc.interval[1]
    assert acc.p_value < 1e-6 and acc.distinguishable and acc.b_is_better
    same = {d.metric: d for d in paired_differences(labels, a, a.copy(), 2)}
    assert all(d.difference == 0 and d.interval == (0, 0) for d in same.values())
    assert same["accuracy"].p_value == 1.0 and not same["f1"].distinguishable
    # McNemar counts only the examples exactly one run got right: 3 for B, 1 for A
    y = np.array([1, 1, 1, 1, 0, 0])
    assert mcnemar(y, np.array([0, 0, 0, 1, 0, 0]), np.array([1, 1, 1, 0, 0, 0])) == 0.625


def test_no_paired_test_across_test_sets(trained_runs, tmp_path):
    other = copy_run(trained_runs["custom_head"], tmp_path / "other")
    metrics = json.loads((other / "metrics.json").read_text())
    runs = [compare.Run.read(trained_runs["hf_head"]), None]
    for fingerprint, reason in (
        ("0" * 64, "tested on different texts"),
        (None, "records no fingerprint of its test texts"),
    ):
        metrics["test_sha256"] = fingerprint
        (other / "metrics.json").write_text(json.dumps(metrics))
        runs[1] = compare.Run.read(other)
        why = compare.paired(*runs)
        assert isinstance(why, str) and reason in why
        assert f"- **other**: no paired test: {why}" in compare.markdown(runs, ["hf_head", "other"])


def test_a_run_against_its_evaluation_compares_like_with_like(trained_runs, tmp_path):
    """An evaluation folder is the run it scored on the data it scored: against that run on
    its own test split, no setting differs, the paired test finds no difference, and the list
    says which folder is which kind."""
    from src.compare import Run, markdown
    from src.evaluate import CONFIG_NAME, evaluate, prepare
    from tests.conftest import compose

    run = trained_runs["hf_head"]
    cfg = compose([f"run_dir={run}"], config_name=CONFIG_NAME)
    cfg, found = prepare(cfg, [f"run_dir={run}"])
    evaluate(cfg, tmp_path / "eval", found)
    out = markdown([Run.read(run), Run.read(tmp_path / "eval")], ["run", "eval"])
    assert f"- **run**: `{run.as_posix()}`, a training run" in out
    assert f"- **eval**: `{(tmp_path / 'eval').as_posix()}`, an evaluation of `{run}`" in out
    assert "None: the resolved configs are identical." in out
    assert "accuracy +0.000 [+0.000, +0.000]" in out
