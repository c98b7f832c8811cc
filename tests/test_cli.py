"""The entry point as a user types it: a real run, and one clear line for each mistake."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def _single_error_line(proc) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc.stderr


def test_smoke_run_as_typed(tmp_path):
    proc = run_cli("debug=smoke", "model=custom_head", "dropout=0.3", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["test"]) == {"accuracy", "precision", "recall", "f1"}
    assert (tmp_path / ".hydra" / "config.yaml").is_file()
    assert "dropout: 0.3" in (tmp_path / ".hydra" / "config.yaml").read_text()


def test_unknown_group_option(tmp_path):
    proc = run_cli("model=nope", f"hydra.run.dir={tmp_path}")
    err = _single_error_line(proc)
    assert (
        err
        == "error: model=nope: conf/model/ has no option 'nope'; options: custom_head, hf_head\n"
    )
    assert proc.returncode == 2


def test_missing_corpus(tmp_path):
    proc = run_cli(
        "debug=smoke",
        f"hydra.run.dir={tmp_path}/run",
        env={"NLTK_DATA": str(tmp_path), "HOME": str(tmp_path)},
    )
    err = _single_error_line(proc)
    assert proc.returncode == 2
    assert err.count("\n") == 1 and "python -m nltk.downloader movie_reviews" in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_missing_data_file(tmp_path):
    proc = run_cli(
        "debug=smoke",
        "dataset=files",
        f"dataset.train_file={tmp_path}/nope.csv",
        f"hydra.run.dir={tmp_path}/run",
    )
    err = _single_error_line(proc)
    assert proc.returncode == 2 and "nope.csv does not exist" in err


def test_missing_column_and_empty_file(tmp_path):
    bad = tmp_path / "d.csv"
    bad.write_text("review,label\nnice,1\nbad,0\n")
    proc = run_cli(
        "debug=smoke", "dataset=files", f"dataset.train_file={bad}", f"hydra.run.dir={tmp_path}/run"
    )
    err = _single_error_line(proc)
    assert "no column 'text'" in err and "dataset.text_column" in err
    bad.write_text("")
    proc = run_cli(
        "debug=smoke",
        "dataset=files",
        f"dataset.train_file={bad}",
        f"hydra.run.dir={tmp_path}/run2",
    )
    assert "is empty" in _single_error_line(proc)
