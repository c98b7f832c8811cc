"""Export a trained run for serving: ONNX, optionally int8, checked against the run's model.

    python -m src.export run_dir=outputs/runs/<run>                 # -> <run>/export-onnx/
    python -m src.export run_dir=<run> quantize=int8 [out=<folder>] # -> <run>/export-onnx-int8/

The folder holds model.onnx, the tokenizer, config.json (label names, problem type),
preprocessing.json (the task and how the run cut texts: max_length, truncation, stride, chunk
pooling), a model card and export.json. `python -m src.predict run_dir=<folder>` and
`python -m src.evaluate run_dir=<folder>` serve it as they serve a run, through the same code
(src.outputs.trained's Predictor; onnxruntime behind the model's call), and onnxruntime alone
loads it.

The export is torch.onnx's (the TorchScript exporter, opset 17); `quantize=int8` is
onnxruntime's dynamic quantization (int8 weights of every MatMul, one scale per output
channel; activations quantized per batch; the embedding tables stay fp32). Before the folder is
written, the export predicts the run's own test texts and is compared with the torch model:
the largest probability difference is printed, and the export is refused (exit 1, no folder
left) when more than `max_disagreement` of the texts (default 0.01, 1%; with int8 0.03, 3%) get
another label (regression: another value, by more than 1% of the test labels' spread).
Other keys: `batch_size` (32), `max_texts` (all: how many test texts the check reads).
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from src.config import cli, rundir
from src.config.errors import CheckFailed, UserError, run_command
from src.models.exported import EXPORT_FILE, ONNX_FILE
from src.outputs.trained import Opened, Predictor, open_model
from src.trainers import progress

DEFAULTS = dict(
    run_dir=None,
    format="onnx",
    quantize=None,
    out=None,
    max_disagreement=None,
    batch_size="32",
    max_texts=None,
)
# how many of the test texts may get another label: fp32 only reorders float sums; int8 weights
# move the texts nearest the boundary (the default run: 7 of 400, benchmarks/RESULTS_export.md)
TOLERANCE = {None: "0.01", "int8": "0.03"}
FORMATS, QUANTIZE = ("onnx",), ("int8",)
OPSET = 17
SPREAD_SHARE = 0.01  # regression: a value "disagrees" past this share of the test labels' std


def parse_args(argv: Sequence[str]) -> dict:
    args = cli.key_values(argv, DEFAULTS)
    if not args["run_dir"]:
        raise UserError("run_dir=<a run folder under outputs/runs/> is required")
    if args["format"] not in FORMATS:
        raise UserError(f"format={args['format']}: one of {', '.join(FORMATS)}")
    if args["quantize"] not in (None, "", *QUANTIZE):
        raise UserError(
            f"quantize={args['quantize']}: one of {', '.join(QUANTIZE)} (or leave it out: fp32)"
        )
    if args["max_disagreement"] is None:
        args["max_disagreement"] = TOLERANCE[args["quantize"] or None]
    try:
        share = float(args["max_disagreement"])
    except ValueError:
        share = -1.0
    if not 0 <= share < 1:
        raise UserError(
            f"max_disagreement={args['max_disagreement']}: a share from 0 to 1 "
            "(0.01: 1% of the test texts may get another label)"
        )
    for key in ("batch_size", "max_texts"):
        if args[key] is not None and (not str(args[key]).isdigit() or int(args[key]) < 1):
            raise UserError(f"{key}={args[key]}: a positive integer")
    return args


def source(args: dict) -> Opened:
    """The trained run to export, opened; an export of an export is one line (its graph is
    fixed; the run's torch model is what exports again)."""
    found = open_model(args["run_dir"])
    if found.kind == "export" or (found.scored is not None and found.scored.kind == "export"):
        again = f"run_dir={found.run}" if found.run else "the run folder it came from"
        raise UserError(
            f"run_dir={args['run_dir']}: already an ONNX export; export from the trained model: "
            f"{again}"
        )
    if found.run is None:
        raise UserError(
            f"run_dir={args['run_dir']}: {found.what}, with no run folder beside it; give the "
            "run folder (the export is checked on the run's own test texts)"
        )
    return found


class _Logits:
    """The model as ONNX sees it: token tensors in, logits out."""

    def __new__(cls, model: Any, names: list[str]):
        import torch

        class Logits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
                return self.model(**dict(zip(names, inputs, strict=True))).logits

        return Logits().eval()


def to_onnx(predictor: Any, path: Path) -> list[str]:
    """torch.onnx's export of the predictor's model (batch and length dynamic); its inputs."""

    import torch

    tokenizer = predictor.tokenizer
    pairs = ["a second text", "and one more"] if predictor.pairs else None
    sample = tokenizer(
        ["a short text to trace", "another"], pairs, padding=True, return_tensors="pt"
    )
    names = [n for n in tokenizer.model_input_names if n in sample]
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():  # the tracer's notes on the model's code
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Logits(predictor.model, names),
            tuple(sample[n] for n in names),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return names


def quantize_int8(path: Path) -> None:

    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_suffix(".fp32.onnx")
    path.rename(fp32)
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)  # its advice to pre-process first, logged on the root logger
    # the MatMuls' weights (the embedding tables stay fp32, as PyTorch's dynamic quantization
    # of BERT does), one scale per output channel rather than per matrix: on the default run
    # (MiniLM) the coarser choice moved more test labels (benchmarks/RESULTS_export.md)
    try:
        quantize_dynamic(
            str(fp32),
            str(path),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
    finally:
        root.setLevel(level)
    fp32.unlink()


def compare(task: Any, reference: Any, exported: Any, scale: float = 1.0) -> tuple[int, float]:
    """(texts whose label differs, the largest probability (or value) difference). A value
    (regression) differs past SPREAD_SHARE of `scale`, the test labels' spread: the label's
    units, not the spread of a model that may predict nearly one value."""

    a, b = task.outputs(reference), task.outputs(exported)
    largest = float(np.max(np.abs(a - b))) if a.size else 0.0
    if task.NAME == "regression":
        differ = np.abs(a - b).reshape(len(a), -1).max(1) > SPREAD_SHARE * max(scale, 1e-12)
    else:
        da, db = task.decide(reference), task.decide(exported)
        differ = (da != db).reshape(len(a), -1).any(1)
    return int(differ.sum()), largest


def export(args: dict) -> Path:

    found = source(args)  # a wrong folder fails before torch loads
    run, int8 = found.run, args["quantize"] == "int8"
    out = Path(args["out"] or run / f"export-onnx{'-int8' if int8 else ''}")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"out={out}: not empty; remove it or choose another folder")
    if reason := rundir.unwritable_reason(out.parent):
        raise UserError(f"out={out}: {reason}; choose a writable folder")
    task = found.task()
    limit = args["max_texts"] and int(args["max_texts"])
    test = found.test_split(task).head(limit)  # the run's own test texts
    progress.quiet_libraries()
    predictor = found.predictor("cpu")
    partial = out.with_name(out.name + ".partial")  # renamed into place once checked
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        inputs = to_onnx(predictor, partial / ONNX_FILE)
        if int8:
            quantize_int8(partial / ONNX_FILE)
        predictor.tokenizer.save_pretrained(partial)
        predictor.model.config.save_pretrained(partial)
        for name in (rundir.PREPROCESSING_FILE, "README.md"):
            if (found.model / name).is_file():
                shutil.copy2(found.model / name, partial / name)
        batch = int(args["batch_size"])
        reference = predictor.logits(test.texts, batch, test.pairs)
        exported = Predictor.load_folder(partial, "cpu").logits(test.texts, batch, test.pairs)
        scale = float(np.std(test.labels)) if task.NAME == "regression" and len(test) else 1.0
        differ, largest = compare(task, reference, exported, scale)
        allowed = float(args["max_disagreement"])
        kind = "another value" if task.NAME == "regression" else "another label"
        print(
            f"check on the run's {len(test)} test texts: {differ} get {kind} than the torch "
            f"model (allowed: {allowed:.0%}, max_disagreement={args['max_disagreement']}); "
            f"largest difference in probability (or value): {largest:.2e}"
        )
        if differ > allowed * len(test):
            raise CheckFailed(
                f"the export disagrees with the torch model on {differ} of {len(test)} test "
                f"texts (over max_disagreement={args['max_disagreement']}); nothing was written"
            )
        size = (partial / ONNX_FILE).stat().st_size
        record = {
            "format": "onnx",
            "opset": OPSET,
            "quantize": "int8" if int8 else None,
            "inputs": inputs,
            "source": str(found.model),
            "run_dir": run.as_posix(),
            "run_path": str(run.resolve()),
            "onnx_bytes": size,
            "check": {
                "texts": len(test),
                "disagree": differ,
                "max_disagreement": allowed,
                "largest_difference": largest,
                "agreement": 1 - differ / len(test) if len(test) else None,
            },
            "labels": predictor.label_names,
            "task": task.NAME,
        }
        rundir.write_json(partial / EXPORT_FILE, record)
        _card(partial, record, run, out, predictor.pairs)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    print(
        f"wrote {out} ({size / 2**20:.1f} MB model.onnx{', int8' if int8 else ''}); "
        f"python -m src.predict run_dir={out} {_example(predictor.pairs)}"
    )
    return out


def _example(pairs: dict | None) -> str:
    """A predict command's texts: a sentence-pair model takes two."""
    return 'text="..." text_pair="..."' if pairs else 'text="..."'


def _card(folder: Path, record: dict, run: Path, out: Path, pairs: dict | None) -> None:
    """The run's model card, with what the export is and how it was checked; `out` is where
    the folder will be once checked (it is written under another name until then)."""
    card = folder / "README.md"
    check = record["check"]
    int8 = ", int8 dynamic quantization" if record["quantize"] else ""
    section = "\n".join(
        [
            "",
            "## This export",
            "",
            f"ONNX (opset {record['opset']}){int8}, exported from `{run}` by "
            f"`python -m src.export`. On the run's {check['texts']} test "
            f"texts it gives another label than the torch model on {check['disagree']} "
            f"(largest probability difference {check['largest_difference']:.2e}).",
            "",
            f"Serve it with `python -m src.predict run_dir={out.as_posix()} {_example(pairs)}`, "
            "or with onnxruntime alone "
            "(inputs: " + ", ".join(f"`{n}`" for n in record["inputs"]) + "; output `logits`; cut "
            "texts as preprocessing.json says).",
            "",
        ]
    )
    text = card.read_text() if card.is_file() else f"# {run.name}\n"
    rundir.write_atomic(card, text.rstrip() + "\n" + section)


def main(argv: Sequence[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    export(parse_args(argv))
    return 0


if __name__ == "__main__":
    run_command(main)
