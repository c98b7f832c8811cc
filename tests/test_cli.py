"""The entry point as a user types it: a real run, and one clear line for each mistake."""

from __future__ import annotations

import json
import os
import signal

from tests.conftest import IMPORTTIME, imported, run_cli, start_cli
from tests.forkserver import Started


def test_smoke_run_as_typed(tmp_path):
    """A new interpreter, as the user's shell starts it (the other tests' commands are forked
    from one that has the libraries imported: tests/forkserver.py)."""
    args = ("debug=smoke", "model=custom_head", "dropout=0.3", f"hydra.run.dir={tmp_path}")
    proc = run_cli(*args, fresh=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["test"]) == {"accuracy", "precision", "recall", "f1"}
    assert (tmp_path / ".hydra" / "config.yaml").is_file()
    assert "dropout: 0.3" in (tmp_path / ".hydra" / "config.yaml").read_text()


def test_a_forked_command_reads_as_a_fresh_interpreter(tmp_path):
    """The commands the tests fork from the libraries' server (tests/forkserver.py) print and
    exit as a new interpreter does, and a signal ends one as it ends a Popen. The server runs
    wherever no CUDA driver is loaded (a fork must not inherit CUDA)."""
    for args in (("lr=0",), ("--cfg", "job", "model=custom_head", "dropout=0.3")):
        forked, fresh = run_cli(*args), run_cli(*args, fresh=True)
        assert forked.returncode == fresh.returncode and forked.returncode in (0, 2)
        assert (forked.stdout, forked.stderr) == (fresh.stdout, fresh.stderr)
    proc = start_cli("debug=smoke", f"hydra.run.dir={tmp_path}/run")
    assert isinstance(proc, Started) == (not os.path.exists("/dev/nvidiactl"))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


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


def test_a_folder_path_is_quoted_for_hydra_unless_it_lists_folders(tmp_path):
    """`run_dir=<a sweep job's folder>` as shown (`0_lr=1e-4,seed=2`) is one path, quoted for
    Hydra; `-m run_dir=a,b` over two folders that exist (their whole does not) stays the sweep
    it was typed as (it was quoted into one path: 'no such folder')."""
    from src.config.cli import quote_paths

    job, a, b = tmp_path / "0_lr=1e-4,seed=2", tmp_path / "a", tmp_path / "b"
    for folder in (job, a, b):
        folder.mkdir()
    assert quote_paths([f"run_dir={job}"], ("run_dir",)) == [f"run_dir='{job}'"]
    assert quote_paths([f"run_dir={a},{b}"], ("run_dir",)) == [f"run_dir={a},{b}"]
    assert quote_paths([f"run_dir={a},{tmp_path}/c"], ("run_dir",)) == [
        f"run_dir='{a},{tmp_path}/c'"
    ]
