"""Predict with a trained run: one text, or a whole file.

    python -m src.predict run_dir=outputs/runs/<run> text="A gripping, beautifully acted film."
    python -m src.predict run_dir=outputs/runs/<run> input=reviews.csv [output=preds.csv]

`run_dir` is a finished run (its metrics.json and best_model/), or a best_model folder itself.
`input` is .csv / .tsv / .jsonl (texts in `text_column`, default `text`) or .txt (one text a
line); an empty text keeps its row in the output, with empty prediction cells, and the count
is printed; the predictions go to `output` (.csv, .tsv or .jsonl, as its extension says), else to
`<input>.predictions.csv` beside it: the input's columns, then `prediction` and one
`p_<label>` probability column per label. What a
prediction is follows the task the run was trained for: a label (single_label), the JSON list
of labels whose probability reaches the run's threshold (multi_label), a number in the label's
units (regression).
Other keys: `batch_size` (32), `device` (auto | cpu | cuda | mps), `text_column` (text; for a
sentence-pair model, the run's).
A sentence-pair model takes its second text as `text_pair="..."` (required: a lone text is
refused), or from a file's `text_pair_column` (default: the run's `dataset.text_pair_column`,
kept in best_model/preprocessing.json).

Texts are cut as in training (the run's max_length and truncation strategy, kept in
best_model/preprocessing.json), through the same code. Arguments are plain `key=value` rather
than Hydra overrides, so a text may hold commas, quotes and brackets as typed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from src import rundir
from src.errors import UserError, one_line

if TYPE_CHECKING:
    import numpy as np
    import torch

DEFAULTS = dict(run_dir=None, text=None, text_pair=None, input=None, output=None,
                text_column=None, text_pair_column=None, batch_size="32",
                device="auto")  # fmt: skip


@dataclass
class Predictor:
    """A trained model, its tokenizer, how training cut the texts and the task it learnt."""

    model: torch.nn.Module
    tokenizer: object  # a transformers tokenizer
    max_length: int
    truncation: str
    device: torch.device
    stride: int = 0  # truncation=chunks: windows, pooled per text
    chunk_pooling: str = "logits"
    task: Any = None  # src.tasks: what the outputs are (the model's problem_type)
    pairs: dict | None = None  # a sentence-pair model: the run's text and pair columns

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto") -> Predictor:
        from transformers import AutoTokenizer

        from src.devices import resolve_device
        from src.models import load_trained
        from src.tasks import of_model

        folder = model_folder(Path(run_dir))
        settings = json.loads((folder / rundir.PREPROCESSING_FILE).read_text())
        torch_device = resolve_device(device)
        model = load_trained(folder).to(torch_device).eval()
        return cls(
            model=model,
            tokenizer=AutoTokenizer.from_pretrained(folder),
            max_length=int(settings["max_length"]),
            truncation=str(settings["truncation"]),
            device=torch_device,
            stride=int(settings.get("stride", 0)),
            chunk_pooling=str(settings.get("chunk_pooling", "logits")),
            task=of_model(model.config, settings.get("task") or {}),
            pairs=settings.get("pairs"),
        )

    @property
    def label_names(self) -> list[str]:
        id2label = self.model.config.id2label
        return [id2label[i] for i in range(len(id2label))]

    def probabilities(self, texts: Sequence[str], batch_size: int = 32,
                      pairs: Sequence[str] | None = None) -> np.ndarray:  # fmt: skip
        """What the task outputs, one row per text (or pair), in input order: class
        probabilities (softmax), each label's probability (sigmoid, multi_label), the value
        (regression). A text cut into windows gets its windows' pooled prediction, as in
        training's evaluation."""
        return self.task.outputs(self.logits(texts, batch_size, pairs))

    def logits(self, texts: Sequence[str], batch_size: int = 32,
               pairs: Sequence[str] | None = None) -> np.ndarray:  # fmt: skip
        """The model's logits, one row per text (or pair), in input order: the texts cut as in
        training, then src.inference (batches of similar length; windows pooled)."""
        from src import data, inference

        cut = (self.max_length, self.truncation, self.stride)
        features = data.encode_texts(self.tokenizer, texts, *cut, pairs=pairs)
        collate = data.collator(self.tokenizer)

        def backend(examples: Any) -> np.ndarray:
            return inference.forward(self.model, examples, collate, batch_size, self.device)

        return inference.documents(features, backend, self.chunk_pooling)


def model_folder(run_dir: Path) -> Path:
    """The best_model folder of a finished run (or `run_dir` itself when it is one)."""
    settings, best = rundir.PREPROCESSING_FILE, rundir.BEST_MODEL_DIR
    if not run_dir.is_dir():
        raise UserError(f"run_dir={run_dir}: no such folder")
    if (run_dir / settings).is_file() and (run_dir / "config.json").is_file():
        return run_dir
    if missing := [name for name in (rundir.METRICS_FILE, best) if not (run_dir / name).exists()]:
        raise UserError(
            f"run_dir={run_dir}: not a finished run (no {' or '.join(missing)}); "
            "give a folder under outputs/runs/ that `python -m src.run` completed"
        )
    if not (run_dir / best / settings).is_file():
        raise UserError(
            f"run_dir={run_dir}: {best}/ has no {settings} (a run made before predict existed); "
            "retrain it"
        )
    return run_dir / best


def read_texts(path: Path, text_column: str, text_pair_column: str | None = None,
               ) -> tuple[list[dict], list[str], list[str] | None]:  # fmt: skip
    """The input rows (kept for the output), their texts and (for pairs) their second texts."""
    from src import data

    if not path.is_file():
        raise UserError(f"input={path}: no such file")
    if path.suffix.lower() == ".txt":
        if text_pair_column:
            raise UserError(f"input={path}: a .txt holds one text a line; pairs need a table")
        texts = data.read_text(path).splitlines()  # a blank line keeps its place (no prediction)
        return [{"text": t} for t in texts], _some(path, texts), None
    rows = data.read_rows(path)
    columns = [(text_column, "text_column")]
    columns += [(text_pair_column, "text_pair_column")] if text_pair_column else []
    for column, key in columns:
        if rows and column not in rows[0]:
            found = ", ".join(map(str, rows[0]))
            raise UserError(f"{path}: no column '{column}' (found: {found}); set {key}=")
    texts = _some(path, [_text(row.get(text_column)) for row in rows])
    pairs = [_text(row.get(text_pair_column)) for row in rows] if text_pair_column else None
    return rows, texts, pairs


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _some(path: Path, texts: list[str]) -> list[str]:
    if not any(t.strip() for t in texts):
        raise UserError(f"input={path}: no texts in it")
    return texts


def parse_args(argv: Sequence[str]) -> dict:
    args = dict(DEFAULTS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in DEFAULTS:
            raise UserError(f"{arg}: expected key=value with key one of {', '.join(DEFAULTS)}")
        args[key] = value
    if not args["run_dir"]:
        raise UserError("run_dir=<a run folder under outputs/runs/> is required")
    if (args["text"] is None) == (args["input"] is None):
        raise UserError('give one of text="..." or input=<file.csv|.jsonl|.txt>')
    if args["text"] is not None and not args["text"].strip():
        raise UserError("text= is empty")
    if args["text_pair"] is not None and args["text"] is None:
        raise UserError('text_pair= goes with text="..." (a file: text_pair_column=)')
    if args["output"] and not args["input"]:
        raise UserError("output= goes with input=<file>")
    from src.outputs import PREDICTION_FORMATS

    if args["output"] and Path(args["output"]).suffix.lower() not in PREDICTION_FORMATS:
        raise UserError(f"output={args['output']}: predictions are written as "
                        f"{', '.join(PREDICTION_FORMATS)}; name the file so")  # fmt: skip
    if not args["batch_size"].isdigit() or int(args["batch_size"]) < 1:
        raise UserError(f"batch_size={args['batch_size']}: a positive integer")
    return args


def main(argv: Sequence[str]) -> None:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    args = parse_args(argv)
    folder = model_folder(Path(args["run_dir"]))  # a wrong folder fails before torch loads
    check_pairs(args, json.loads((folder / rundir.PREPROCESSING_FILE).read_text()).get("pairs"))
    if args["text"] is not None:
        predict_text(args)
    else:
        predict_file(args)


def check_pairs(args: dict, pairs: dict | None) -> None:
    """A sentence-pair model takes two texts (a file's second column defaults to the run's);
    a single-text model takes one. Either mistake is one line, before torch loads."""
    if not args["text_column"]:  # a pair model's: the run's own; else `text`
        args["text_column"] = pairs["text_column"] if pairs else "text"
    if pairs is None:
        if args["text_pair"] is not None or args["text_pair_column"]:
            given = "text_pair=" if args["text_pair"] is not None else "text_pair_column="
            raise UserError(f"{given}: this run was trained on single texts; drop it")
        return
    column = pairs["text_pair_column"]
    if args["text"] is not None and args["text_pair"] is None:
        raise UserError(
            f'text_pair= is missing: this run was trained on sentence pairs (its second text: '
            f'column {column}); give text="..." text_pair="..."'
        )
    if args["input"] is not None and not args["text_pair_column"]:
        if Path(args["input"]).suffix.lower() == ".txt":
            raise UserError(f"input={args['input']}: this run takes sentence pairs; a .txt holds "
                            f"one text a line: give a table with a '{column}' column")  # fmt: skip
        args["text_pair_column"] = column  # the run's own pair column


def predict_text(args: dict) -> None:
    predictor = _load(args)
    names = predictor.label_names
    pair = None if args["text_pair"] is None else [args["text_pair"]]
    output = predictor.probabilities([args["text"]], pairs=pair)[0]
    predicted = predictor.task.prediction_cells(output, names)["prediction"]
    if predictor.task.NAME == "regression":
        print(f"{names[0]}: {predicted}")
        return
    shown = ", ".join(predicted) or "(none)" if isinstance(predicted, list) else predicted
    print(f"{'labels' if isinstance(predicted, list) else 'label'}: {shown}")
    print("probabilities: " + " ".join(f"{n}={p:.4f}" for n, p in zip(names, output, strict=True)))


def predict_file(args: dict) -> None:
    source = Path(args["input"])
    # bad input fails before torch loads
    rows, texts, pairs = read_texts(source, args["text_column"], args["text_pair_column"])
    predictor = _load(args)
    names = predictor.label_names
    task = predictor.task
    # an empty text (or pair text) keeps its row, with empty prediction cells: row i of the
    # output is row i of the input
    kept = [i for i, t in enumerate(texts) if t.strip() and (pairs is None or pairs[i].strip())]
    found = predictor.probabilities([texts[i] for i in kept], int(args["batch_size"]),
                                    None if pairs is None else [pairs[i] for i in kept])
    outputs: list = [None] * len(texts)
    for i, output in zip(kept, found, strict=True):
        outputs[i] = output
    target = Path(args["output"]) if args["output"] else source.with_suffix(".predictions.csv")
    from src.outputs import predictions_csv

    table = predictions_csv(rows, outputs, names, task, target.suffix.lower())
    rundir.write_atomic(target, table)
    empty = len(texts) - len(kept)
    note = f"; {empty} empty text{'s' * (empty > 1)} kept its row, no prediction" if empty else ""
    print(f"wrote {len(kept)} predictions ({_tally(task, found, names)}) to {target}{note}")


def _tally(task: Any, outputs: np.ndarray, names: list[str]) -> str:
    """How many texts got each label (multi_label: each label), or the values' mean."""
    import numpy as np

    if task.NAME == "regression":
        return f"mean {names[0]} {outputs.mean():.4g}"
    if task.NAME == "multi_label":
        per = (outputs >= task.threshold).sum(0)
    else:
        per = np.bincount(outputs.argmax(-1), minlength=len(names))
    return ", ".join(f"{n} {int(c)}" for n, c in zip(names, per, strict=True))


def _load(args: dict) -> Predictor:
    from src import progress

    progress.quiet_libraries()
    return Predictor.load(args["run_dir"], args["device"])


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except UserError as e:
        print(one_line(e), file=sys.stderr)
        sys.exit(2)
