"""`python -m src.export`: both heads to ONNX and int8, checked against the torch model on the
run's own test texts; src.predict and src.evaluate serve the folder as they serve the run;
onnxruntime alone loads it; a disagreeing export leaves nothing; mistakes are one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from src import export, predict
from src.config.compose import compose
from src.config.errors import UserError
from src.evaluate import CONFIG_NAME, evaluate
from src.models.exported import EXPORT_FILE, ONNX_FILE
from src.outputs.trained import Predictor
from tests.conftest import command_exit

HEADS = ["hf_head", "custom_head"]
SMOKE_CAPS = ["dataset.max_eval_samples=32"]  # the test split the smoke runs were scored on


@pytest.fixture(scope="module")
def exports(trained_runs, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """(head, fp32 | int8) -> the export of that head's shared run."""
    out = {}
    for head in HEADS:
        for kind in ("fp32", "int8"):
            folder = tmp_path_factory.mktemp("export") / f"{head}-{kind}"
            args = [f"run_dir={trained_runs[head]}", f"out={folder}"]
            assert export.main(args + (["quantize=int8"] if kind == "int8" else [])) == 0
            out[head, kind] = folder
    return out


@pytest.mark.parametrize("head", HEADS)
def test_the_folder_holds_what_serving_needs_and_its_check(exports, head):
    for kind in ("fp32", "int8"):
        folder = exports[head, kind]
        names = {p.name for p in folder.iterdir()}
        assert {
            ONNX_FILE,
            "config.json",
            "tokenizer.json",
            "preprocessing.json",
            "README.md",
            EXPORT_FILE,
        } <= names, names
        record = json.loads((folder / EXPORT_FILE).read_text())
        assert record["check"]["texts"] == 32 and record["check"]["disagree"] == 0
        assert record["quantize"] == (None if kind == "fp32" else "int8")
        assert "## This export" in (folder / "README.md").read_text()
    import onnx

    fp32, int8 = (exports[head, k] / ONNX_FILE for k in ("fp32", "int8"))
    ops = {
        k: [n.op_type for n in onnx.load(str(p)).graph.node]
        for k, p in (("fp32", fp32), ("int8", int8))
    }
    # every MatMul with weights runs on int8 weights (the embedding tables stay fp32)
    assert ops["int8"].count("MatMulInteger") >= 6 and "MatMulInteger" not in ops["fp32"]
    assert int8.stat().st_size < fp32.stat().st_size


@pytest.mark.parametrize("head", HEADS)
def test_predict_serves_the_export_as_it_serves_the_run(trained_runs, exports, head, tmp_path):
    texts = ["A gripping, beautifully acted film.", "Dull and far too long. " * 80, ""]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n")
    tables = []
    for folder in (trained_runs[head], exports[head, "fp32"], exports[head, "int8"]):
        out = tmp_path / f"{folder.name}.csv"
        predict.main([f"run_dir={folder}", f"input={source}", f"output={out}"])
        tables.append(list(csv.DictReader(out.open())))
    run, fp32, int8 = tables
    assert list(run[0]) == list(fp32[0]) == list(int8[0])  # the same columns
    assert [r["prediction"] for r in run] == [r["prediction"] for r in fp32]
    assert fp32[2]["prediction"] == "" and run[2]["prediction"] == ""  # the empty text's row
    probs = [[[float(r[f"p_{n}"]) for n in ("neg", "pos")] for r in t[:2]] for t in tables]
    np.testing.assert_allclose(probs[1], probs[0], atol=1e-4)
    np.testing.assert_allclose(probs[2], probs[0], atol=0.05)


def test_evaluate_scores_the_export_as_it_scores_the_run(trained_runs, exports, tmp_path):
    run = trained_runs["custom_head"]
    cfg = compose(
        [f"run_dir={exports['custom_head', 'fp32']}", *SMOKE_CAPS], config_name=CONFIG_NAME
    )
    record = evaluate(cfg, tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert record["test"] == pytest.approx(metrics["test"], abs=1e-6)
    assert record["test_sha256"] == metrics["test_sha256"] and record["model"] == "OnnxModel"


def test_onnxruntime_alone_loads_the_export(trained_runs, exports):
    """The README's ten lines: tokenizer and session, no project code."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    folder = exports["hf_head", "fp32"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    session = ort.InferenceSession(str(folder / "model.onnx"))
    batch = tokenizer(["A gripping film."], truncation=True, max_length=64, return_tensors="np")
    feeds = {i.name: batch[i.name].astype("int64") for i in session.get_inputs()}
    logits = session.run(["logits"], feeds)[0]
    ours = Predictor.load(trained_runs["hf_head"]).logits(["A gripping film."])
    np.testing.assert_allclose(logits, ours, atol=1e-4)


def test_a_disagreeing_export_is_refused_and_leaves_nothing(
    trained_runs, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(export, "compare", lambda task, a, b, scale: (2, 0.3))
    folder = tmp_path / "out"
    code, err = command_exit(
        export.main, f"run_dir={trained_runs['hf_head']}", f"out={folder}", capsys=capsys
    )
    assert code == 1 and not folder.exists() and not list(tmp_path.iterdir())
    assert err.strip() == (
        "error: the export disagrees with the torch model on 2 of 32 test "
        "texts (over max_disagreement=0.01); nothing was written"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["format=tflite"], "error: format=tflite: one of onnx"),
        (["quantize=int4"], "error: quantize=int4: one of int8"),
        (["max_disagreement=2"], "error: max_disagreement=2: a share from 0 to 1"),
        (["run_dir=nope"], "error: run_dir=nope: no such folder"),
    ],
)
def test_mistakes_are_one_line(trained_runs, args, expected, capsys):
    given = [f"run_dir={trained_runs['hf_head']}", *args]
    code, err = command_exit(export.main, *given, capsys=capsys)
    assert code == 2 and err.startswith(expected) and err.count("\n") == 1
    with pytest.raises(UserError):
        export.parse_args(["run_dir=x", "colour=red"])
