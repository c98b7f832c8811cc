"""Every bad input through the real entry point: one line naming the file/row/key, exit 2."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

GOOD_ROWS = "".join(f"review {i},{['neg', 'pos'][i % 2]}\n" for i in range(40))


def _run_files(
    tmp_path, train: str | bytes, test: str | None = None, suffix: str = ".csv", *extra: str
):
    train_file = tmp_path / f"train{suffix}"
    (train_file.write_bytes if isinstance(train, bytes) else train_file.write_text)(train)
    args = [
        "debug=smoke",
        "dataset=files",
        f"dataset.train_file={train_file}",
        f"hydra.run.dir={tmp_path}/run",
        *extra,
    ]
    if test is not None:
        (tmp_path / "test.csv").write_text(test)
        args.append(f"dataset.test_file={tmp_path / 'test.csv'}")
    return run_cli(*args)


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
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_data_file(tmp_path, case):
    train, test, suffix, extra, needles = CASES[case]
    proc = _run_files(tmp_path, train, test, suffix, *extra)
    _assert_one_line(proc, *needles)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_missing_file(tmp_path):
    proc = run_cli(
        "debug=smoke",
        "dataset=files",
        f"dataset.train_file={tmp_path}/nope.csv",
        f"hydra.run.dir={tmp_path}/run",
    )
    _assert_one_line(proc, "nope.csv does not exist")
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"


def test_empty_texts_dropped_with_a_count(tmp_path):
    proc = _run_files(tmp_path, "text,label\n" + GOOD_ROWS + " ,pos\n\t,neg\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dropped 2 rows with empty text" in (tmp_path / "run" / "run.log").read_text()


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "a_file").write_text("")
    proc = run_cli("debug=smoke", f"hydra.run.dir={tmp_path}/a_file/run")
    _assert_one_line(proc, "hydra.run.dir=", "a_file is a file, not a folder")
