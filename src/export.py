"""Export a trained run for serving: ONNX, optionally int8, checked against the run's model.

    python -m src.export run_dir=outputs/runs/<run>                 # -> <run>/export-onnx/
    python -m src.export run_dir=<run> quantize=int8 [out=<folder>] # -> <run>/export-onnx-int8/

The folder holds model.onnx, the tokenizer, config.json (label names, problem type),
preprocessing.json (the task and how the run cut texts: max_length, truncation, stride, chunk
pooling), a model card and export.json. `python -m src.predict run_dir=<folder>` and
`python -m src.evaluate run_dir=<folder>` serve it as they serve a run, through the same code
(src.predict's Predictor; onnxruntime behind the model's call), and onnxruntime alone loads it.

The export is torch.onnx's (the TorchScript exporter, opset 17); `quantize=int8` is
onnxruntime's dynamic quantization (int8 weights of every MatMul, one scale per output
channel; activations quantized per batch; the embedding tables stay fp32). Before the folder is
written, the export predicts the run's own test texts and is compared with the torch model:
the largest probability difference is printed, and the export is refused (exit 1, no folder
left) when more than `max_disagreement` of the texts (default 0.01, 1%; with int8 0.03, 3%) get
another label (regression: another value, by more than 1% of the predictions' spread).
Other keys: `batch_size` (32), `max_texts` (all: how many test texts the check reads).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from src import rundir
from src.errors import UserError, one_line

DEFAULTS = dict(run_dir=None, format="onnx", quantize=None, out=None, max_disagreement=None,
                batch_size="32", max_texts=None)  # fmt: skip
# how many of the test texts may get another label: fp32 only reorders float sums; int8 weights
# move the texts nearest the boundary (the default run: 7 of 400, benchmarks/RESULTS_export.md)
TOLERANCE = {None: "0.01", "int8": "0.03"}
FORMATS, QUANTIZE = ("onnx",), ("int8",)
OPSET = 17
SPREAD_SHARE = 0.01  # regression: a value "disagrees" past this share of the predictions' std


def parse_args(argv: Sequence[str]) -> dict:
    args = dict(DEFAULTS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in DEFAULTS:
            raise UserError(f"{arg}: expected key=value with key one of {', '.join(DEFAULTS)}")
        args[key] = value
    if not args["run_dir"]:
        raise UserError("run_dir=<a run folder under outputs/runs/> is required")
    if args["format"] not in FORMATS:
        raise UserError(f"format={args['format']}: one of {', '.join(FORMATS)}")
    if args["quantize"] not in (None, "", *QUANTIZE):
        raise UserError(f"quantize={args['quantize']}: one of {', '.join(QUANTIZE)} (or leave "
                        "it out: fp32)")  # fmt: skip
    if args["max_disagreement"] is None:
        args["max_disagreement"] = TOLERANCE[args["quantize"] or None]
    try:
        share = float(args["max_disagreement"])
    except ValueError:
        share = -1.0
    if not 0 <= share < 1:
        raise UserError(f"max_disagreement={args['max_disagreement']}: a share from 0 to 1 "
                        "(0.01: 1% of the test texts may get another label)")  # fmt: skip
    for key in ("batch_size", "max_texts"):
        if args[key] is not None and (not str(args[key]).isdigit() or int(args[key]) < 1):
            raise UserError(f"{key}={args[key]}: a positive integer")
    return args


def run_of(folder: Path, given: Path) -> Path:
    """The run folder behind a model folder (its config says where the test texts come from)."""
    for candidate in (given, folder.parent):
        if (candidate / rundir.CONFIG_FILE).is_file():
            return candidate
    raise UserError(
        f"run_dir={given}: no {rundir.CONFIG_FILE} beside the model; give the run folder "
        "(the export is checked on the run's own test texts)"
    )


def test_texts(run: Path, task: Any, limit: int | None) -> tuple[list[str], list[str] | None]:
    """The run's own test split, read as the run read it."""
    from omegaconf import OmegaConf

    from src.build import make

    cfg = OmegaConf.load(run / rundir.CONFIG_FILE)
    test = make(cfg.dataset).load(task).test
    texts, pairs = list(test.texts), list(test.pairs) if test.pairs is not None else None
    return texts[:limit], pairs[:limit] if pairs is not None else None


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
    sample = tokenizer(["a short text to trace", "another"], pairs, padding=True,
                       return_tensors="pt")  # fmt: skip
    names = [n for n in tokenizer.model_input_names if n in sample]
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(_Logits(predictor.model, names), tuple(sample[n] for n in names),
                          str(path), input_names=names, output_names=["logits"],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)  # fmt: skip
    return names


def quantize_int8(path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_suffix(".fp32.onnx")
    path.rename(fp32)
    # the MatMuls' weights (the embedding tables stay fp32, as PyTorch's dynamic quantization
    # of BERT does), one scale per output channel rather than per matrix: on the default run
    # (MiniLM) the coarser choice moved more test labels (benchmarks/RESULTS_export.md)
    quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"])
    fp32.unlink()


def compare(task: Any, reference: Any, exported: Any) -> tuple[int, float]:
    """(texts whose label differs, the largest probability (or value) difference)."""
    import numpy as np

    a, b = task.outputs(reference), task.outputs(exported)
    largest = float(np.max(np.abs(a - b))) if a.size else 0.0
    if task.NAME == "regression":
        limit = SPREAD_SHARE * max(float(np.std(a)), 1e-12)
        differ = np.abs(a - b).reshape(len(a), -1).max(1) > limit
    else:
        da, db = task.decide(reference), task.decide(exported)
        differ = (da != db).reshape(len(a), -1).any(1)
    return int(differ.sum()), largest


def export(args: dict) -> Path:
    from src import progress
    from src.models.exported import EXPORT_FILE, ONNX_FILE
    from src.predict import Predictor, model_folder

    given = Path(args["run_dir"])
    folder = model_folder(given)  # a wrong folder fails before torch loads
    run = run_of(folder, given)
    int8 = args["quantize"] == "int8"
    out = Path(args["out"] or run / f"export-onnx{'-int8' if int8 else ''}")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"out={out}: not empty; remove it or choose another folder")
    progress.quiet_libraries()
    predictor = Predictor.load(folder, "cpu")
    texts, pairs = test_texts(run, predictor.task, args["max_texts"] and int(args["max_texts"]))
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
            if (folder / name).is_file():
                shutil.copy2(folder / name, partial / name)
        batch = int(args["batch_size"])
        reference = predictor.logits(texts, batch, pairs)
        exported = Predictor.load(partial, "cpu").logits(texts, batch, pairs)
        differ, largest = compare(predictor.task, reference, exported)
        allowed = float(args["max_disagreement"])
        kind = "another value" if predictor.task.NAME == "regression" else "another label"
        print(f"check on the run's {len(texts)} test texts: {differ} get {kind} than the torch "
              f"model (allowed: {allowed:.0%}, max_disagreement={args['max_disagreement']}); "
              f"largest difference in probability (or value): {largest:.2e}")  # fmt: skip
        if differ > allowed * len(texts):
            raise UserError(
                f"the export disagrees with the torch model on {differ} of {len(texts)} test "
                f"texts (over max_disagreement={args['max_disagreement']}); nothing was written"
            )
        size = (partial / ONNX_FILE).stat().st_size
        record = {
            "format": "onnx", "opset": OPSET, "quantize": "int8" if int8 else None,
            "inputs": inputs, "source": str(folder), "onnx_bytes": size,
            "check": {"texts": len(texts), "disagree": differ, "max_disagreement": allowed,
                      "largest_difference": largest,
                      "agreement": 1 - differ / len(texts) if texts else None},
            "labels": predictor.label_names, "task": predictor.task.NAME,
        }  # fmt: skip
        rundir.write_json(partial / EXPORT_FILE, record)
        _card(partial, record, run)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    print(f"wrote {out} ({size / 2**20:.1f} MB model.onnx{', int8' if int8 else ''}); "
          f"python -m src.predict run_dir={out} text=\"...\"")  # fmt: skip
    return out


def _card(folder: Path, record: dict, run: Path) -> None:
    """The run's model card, with what the export is and how it was checked."""
    card = folder / "README.md"
    check = record["check"]
    int8 = ", int8 dynamic quantization" if record["quantize"] else ""
    section = "\n".join([
        "", "## This export", "",
        f"ONNX (opset {record['opset']}){int8}, exported from `{run}` by "
        f"`python -m src.export`. On the run's {check['texts']} test "
        f"texts it gives another label than the torch model on {check['disagree']} "
        f"(largest probability difference {check['largest_difference']:.2e}).", "",
        f"Serve it with `python -m src.predict run_dir={folder.name}` or onnxruntime alone "
        "(inputs: " + ", ".join(f"`{n}`" for n in record["inputs"]) + "; output `logits`; cut "
        "texts as preprocessing.json says).", "",
    ])  # fmt: skip
    text = card.read_text() if card.is_file() else f"# {run.name}\n"
    card.write_text(text.rstrip() + "\n" + section)


def main(argv: Sequence[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    try:
        export(parse_args(argv))
    except UserError as e:
        print(one_line(e), file=sys.stderr)
        return 2 if "nothing was written" not in str(e) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
