"""Every bad input: one line naming the file/row/key, and nothing that looks like a finished run.

Each bad file is loaded in-process through the function the run calls (`src.trainers.build.build`,
which reads the data before any model loads); a few go through `python -m src.run` itself, for
the exit code, the one-line format and the status it records.
"""

from __future__ import annotations

import logging
import os

import pytest

from src.config.compose import compose
from src.config.errors import UserError, one_line
from src.trainers.build import build
from src.trainers.loggers import NullLogger
from tests.conftest import IMPORTTIME, imported, run_cli

GOOD_ROWS = "".join(f"review {i},{['neg', 'pos'][i % 2]}\n" for i in range(40))


def _files_args(
    tmp_path, train: str | bytes, test: str | None = None, suffix: str = ".csv", *extra: str
) -> list[str]:
    """The overrides of a debug=smoke run on a train file (and a test file) holding these."""
    train_file = tmp_path / f"train{suffix}"
    (train_file.write_bytes if isinstance(train, bytes) else train_file.write_text)(train)
    args = ["debug=smoke", "dataset=files", f"dataset.train_file={train_file}", *extra]
    if test is not None:
        (tmp_path / "test.csv").write_text(test)
        args.append(f"dataset.test_file={tmp_path / 'test.csv'}")
    return args


def _build_error(args: list[str]) -> str:
    """The line the run prints for the first mistake `build` finds in its data."""
    with pytest.raises(UserError) as caught:
        build(compose(args), NullLogger())
    return one_line(caught.value)


def _assert_one_line(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0]


CASES = {
    "empty": ("", None, ".csv", (), ("train.csv is empty",)),
    "header only": ("text,label\n", None, ".csv", (), ("has a header but no rows",)),
    "ragged csv": ("text,label\na,pos\nb,neg,extra\n", None, ".csv", (), ("row 2", "field count")),
    "bad jsonl": (
        '{"text": "a", "label": "pos"}\n{"text": \n',
        None,
        ".jsonl",
        (),
        ("train.jsonl line 2", "not valid JSON"),
    ),
    "not utf-8": (b"text,label\ncaf\xe9,pos\n", None, ".csv", (), ("not UTF-8",)),
    "no text column": (
        "review,label\na,pos\n",
        None,
        ".csv",
        (),
        ("no column 'text'", "dataset.text_column"),
    ),
    "no label column": ("text,y\na,pos\n", None, ".csv", (), ("no column 'label'",)),
    "missing label": (
        "text,label\n" + GOOD_ROWS + "c,\n",
        None,
        ".csv",
        (),
        ("row 41", "missing label"),
    ),
    "empty text as error": (
        "text,label\n" + GOOD_ROWS + " ,pos\n",
        None,
        ".csv",
        ("dataset.empty_text=error",),
        ("row 41", "empty text"),
    ),
    "single class": ("text,label\na,pos\nb,pos\n", None, ".csv", (), ("only one label",)),
    "unseen test label": (
        "text,label\n" + GOOD_ROWS,
        "text,label\nx,meh\n",
        ".csv",
        (),
        ("test.csv", "['meh']", "never appear"),
    ),
    "fewer than a batch": (
        "text,label\n" + GOOD_ROWS,
        None,
        ".csv",
        ("batch_size=64",),
        ("batch_size=64", "fewer than one batch"),
    ),
    "unknown extension": ("text,label\n", None, ".xlsx", (), ("unsupported extension",)),
    "a class of one example": (
        "text,label\n" + GOOD_ROWS + "z,very rare\n",
        None,
        ".csv",
        (),
        (
            "dataset.test_size=0.2: cannot split the data stratified: 'very rare' has a single "
            "example (each class needs 2); give dataset.test_file, add examples",
        ),
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_data_file(tmp_path, case):
    train, test, suffix, extra, needles = CASES[case]
    line = _build_error(_files_args(tmp_path, train, test, suffix, *extra))
    assert "\n" not in line and all(needle in line for needle in needles), line


def test_bad_data_file_through_the_cli(tmp_path):
    train, test, suffix, extra, needles = CASES["ragged csv"]
    args = _files_args(tmp_path, train, test, suffix, *extra)
    proc = run_cli(*args, f"hydra.run.dir={tmp_path}/run", env=IMPORTTIME)
    roots, proc.stderr = imported(proc)
    _assert_one_line(proc, *needles)
    assert not (tmp_path / "run").exists()  # a run that never trained leaves no folder
    assert not roots & {"torch", "transformers"}  # the job reads the data first


def test_missing_file(tmp_path):
    proc = run_cli(
        "debug=smoke",
        "dataset=files",
        f"dataset.train_file={tmp_path}/nope.csv",
        f"hydra.run.dir={tmp_path}/run",
    )
    _assert_one_line(proc, "dataset.train_file=", "nope.csv does not exist")
    assert not (tmp_path / "run").exists()  # checked with the config: no run folder is made


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("lr=-1",), "error: lr=-1"),
        (("scheduler.warmup_ratio=1.5",), "error: scheduler.warmup_ratio=1.5"),
        (("dataset=files",), "error: dataset=files needs dataset.train_file="),
    ],
)
def test_a_config_that_never_runs_leaves_no_run_folder(tmp_path, args, needle):
    """A bad value is one line before anything is written: no folder, no config tree."""
    proc = run_cli("debug=smoke", *args, f"hydra.run.dir={tmp_path}/run")
    _assert_one_line(proc, needle)
    assert not (tmp_path / "run").exists() and not proc.stdout.strip()


def test_empty_texts_dropped_with_a_count(tmp_path, caplog):
    from src.trainers.build import make

    args = _files_args(tmp_path, "text,label\n" + GOOD_ROWS + " ,pos\n\t,neg\n")
    with caplog.at_level(logging.WARNING):
        corpus = make(compose(args).dataset).load()  # what build loads first
    assert "dropped 2 rows with empty text (dataset.empty_text=drop)" in caplog.text
    assert len(corpus.train) + len(corpus.eval) + len(corpus.test) == 40


@pytest.mark.parametrize(
    ("folder", "needle"),
    [
        ("a_file/run", "a_file is a file, not a folder"),
        (
            "/proc/no_such_folder/run",
            "/proc/no_such_folder/run cannot be created (No such file or directory)",
        ),
    ],
    ids=["under a file", "on a virtual file system"],
)
def test_unwritable_output_folder(tmp_path, folder, needle):
    """`os.access` says yes to root everywhere: only trying to create the folder tells."""
    (tmp_path / "a_file").write_text("")
    proc = run_cli("debug=smoke", f"hydra.run.dir={tmp_path / folder}")
    _assert_one_line(proc, f"hydra.run.dir={tmp_path / folder}: ", needle)


def test_a_folder_a_live_run_holds_is_refused(tmp_path):
    """Two runs into one folder would mix their files: while one lives (here this test's own
    process holds the folder, as a run does), the second is refused before Hydra writes its
    config there; the first one's files are untouched."""
    from src.config.rundir import claimed

    run_dir = tmp_path / "run"
    with claimed(run_dir):
        proc = run_cli("debug=smoke", f"hydra.run.dir={run_dir}")
        _assert_one_line(
            proc,
            f"hydra.run.dir={run_dir}: in use by a run that is still alive "
            f"(pid {os.getpid()}); wait for it to end",
        )
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]


def test_a_backbone_folder_transformers_cannot_read_is_one_line(tmp_path):
    """A folder with no config.json (or none with a model_type): what the job checks first
    (Backbone.reach) is one line naming the key, not transformers' traceback."""
    from src.trainers.build import make

    backbone = make(compose(["debug=smoke", f"backbone.path={tmp_path}"]).backbone)
    with pytest.raises(UserError, match=f"^backbone.path={tmp_path}: cannot load it "):
        backbone.reach()
    (tmp_path / "config.json").write_text("{}")  # read as the model's config when it builds
    with pytest.raises(UserError, match="cannot load it .*Should have a `model_type` key"):
        backbone.config()
