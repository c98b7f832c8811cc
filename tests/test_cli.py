"""The entry point as a user types it: a real run, and one clear line for each mistake."""

from __future__ import annotations

import json

from tests.conftest import IMPORTTIME, imported, run_cli


def test_smoke_run_as_typed(tmp_path):
    proc = run_cli("debug=smoke", "model=custom_head", "dropout=0.3", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["test"]) == {"accuracy", "precision", "recall", "f1"}
    assert (tmp_path / ".hydra" / "config.yaml").is_file()
    assert "dropout: 0.3" in (tmp_path / ".hydra" / "config.yaml").read_text()


def test_missing_corpus(tmp_path):
    """Said before torch or transformers loads (the job reads the data first), no folder."""
    proc = run_cli(
        "debug=smoke",
        f"hydra.run.dir={tmp_path}/run",
        env={"NLTK_DATA": str(tmp_path), "HOME": str(tmp_path), **IMPORTTIME},
    )
    roots, err = imported(proc)
    assert proc.returncode == 2 and "Traceback" not in err + proc.stdout
    assert err.count("\n") == 1 and "python -m nltk.downloader movie_reviews" in err
    assert not roots & {"torch", "transformers"}
    assert not (tmp_path / "run").exists()
