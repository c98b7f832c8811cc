"""Predict with a trained run: one text, or a whole file.

    python -m src.predict run_dir=outputs/runs/<run> text="A gripping, beautifully acted film."
    python -m src.predict run_dir=outputs/runs/<run> input=reviews.csv [output=preds.csv]

`run_dir` is any folder training left (src.outputs.trained): a finished run or a sweep's job, its
best_model/, an export (`python -m src.export`), or an evaluation (the model it scored).
`input` is .csv / .tsv / .jsonl (texts in `text_column`, default `text`) or .txt (one text a
line); an empty text keeps its row in the output, with empty prediction cells, and the count
is printed; the predictions go to `output` (.csv, .tsv or .jsonl, as its extension says), else
beside the input in its format (reviews.predictions.jsonl from reviews.jsonl; a .txt's as CSV:
reviews.txt.predictions.csv): the input's columns, then `prediction` and one `p_<label>`
probability column per label. What a
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

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from src import data
from src.config import cli, rundir
from src.config.devices import check_device_value
from src.config.errors import UserError, run_command
from src.outputs.save import PREDICTION_FORMATS, prediction_columns, predictions_csv
from src.outputs.trained import Opened, Predictor, open_model
from src.trainers import progress

if TYPE_CHECKING:
    import numpy as np

DEFAULTS = dict(
    run_dir=None,
    text=None,
    text_pair=None,
    input=None,
    output=None,
    text_column=None,
    text_pair_column=None,
    batch_size="32",
    device="auto",
)


def read_texts(
    path: Path,
    text_column: str,
    text_pair_column: str | None = None,
) -> tuple[list[dict], list[str], list[str] | None]:
    """The input rows (kept for the output), their texts and (for pairs) their second texts."""

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
        if lacking := next((i for i, row in enumerate(rows, 1) if column not in row), None):
            raise UserError(  # a JSON Lines row without the key: not an empty text
                f'{path}: row {lacking} has no \'{column}\' (an empty text is "{column}": "")'
            )
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

    args = cli.key_values(argv, DEFAULTS)
    if not args["run_dir"]:
        raise UserError("run_dir=<a run folder under outputs/runs/> is required")
    if (args["text"] is None) == (args["input"] is None):
        raise UserError('give one of text="..." or input=<file.csv|.jsonl|.txt>')
    if args["text"] is not None and not args["text"].strip():
        raise UserError("text= is empty")
    if args["text_pair"] is not None and args["text"] is None:
        raise UserError('text_pair= goes with text="..." (a file: text_pair_column=)')
    for key in ("output", "text_column", "text_pair_column"):
        if args[key] and not args["input"]:
            raise UserError(f"{key}= goes with input=<file>; drop it for text=")
    if args["output"] and Path(args["output"]).resolve() == Path(args["input"]).resolve():
        raise UserError(f"output={args['output']}: the input itself; name another file")

    if args["output"] and Path(args["output"]).suffix.lower() not in PREDICTION_FORMATS:
        raise UserError(
            f"output={args['output']}: predictions are written as "
            f"{', '.join(PREDICTION_FORMATS)}; name the file so"
        )
    if not args["batch_size"].isdigit() or int(args["batch_size"]) < 1:
        raise UserError(f"batch_size={args['batch_size']}: a positive integer")
    check_device_value("device", args["device"])
    return args


def main(argv: Sequence[str]) -> None:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    args = parse_args(argv)
    found = open_model(args["run_dir"])  # a wrong folder fails before torch loads
    check_pairs(args, found.pairs)
    if args["text"] is not None:
        predict_text(args, found)
    else:
        predict_file(args, found)


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
            f"text_pair= is missing: this run was trained on sentence pairs (its second text: "
            f'column {column}); give text="..." text_pair="..."'
        )
    if args["input"] is not None and not args["text_pair_column"]:
        if Path(args["input"]).suffix.lower() == ".txt":
            raise UserError(
                f"input={args['input']}: this run takes sentence pairs; a .txt holds "
                f"one text a line: give a table with a '{column}' column"
            )
        args["text_pair_column"] = column  # the run's own pair column


def predict_text(args: dict, found: Opened) -> None:
    predictor = _load(args, found)
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


def predict_file(args: dict, found: Opened) -> None:
    source = Path(args["input"])
    target = Path(args["output"]) if args["output"] else default_output(source)
    # bad input, or an output that cannot be written, fails before torch loads
    rows, texts, pairs = read_texts(source, args["text_column"], args["text_pair_column"])
    names, task = found.label_names, found.task()
    check_columns(source, rows, names, task)
    cli.writable_file(target, "output" if args["output"] else "input")
    predictor = _load(args, found)
    # an empty text (or pair text) keeps its row, with empty prediction cells: row i of the
    # output is row i of the input
    kept = [i for i, t in enumerate(texts) if t.strip() and (pairs is None or pairs[i].strip())]
    predicted = predictor.probabilities(
        [texts[i] for i in kept],
        int(args["batch_size"]),
        None if pairs is None else [pairs[i] for i in kept],
    )
    outputs: list = [None] * len(texts)
    for i, output in zip(kept, predicted, strict=True):
        outputs[i] = output

    table = predictions_csv(rows, outputs, names, task, target.suffix.lower())
    rundir.write_atomic(target, table)
    empty = len(texts) - len(kept)
    note = f"; {empty} empty text{'s' * (empty > 1)} kept its row, no prediction" if empty else ""
    print(f"wrote {len(kept)} predictions ({_tally(task, predicted, names)}) to {target}{note}")


def default_output(source: Path) -> Path:
    """Where a file's predictions go without `output=`: beside it, in its own format
    (reviews.jsonl -> reviews.predictions.jsonl); a .txt's as CSV under its whole name
    (reviews.txt -> reviews.txt.predictions.csv), so that no two inputs share one output."""
    suffix = source.suffix.lower()
    if suffix in PREDICTION_FORMATS:
        return source.with_name(f"{source.stem}.predictions{source.suffix}")
    return source.with_name(f"{source.name}.predictions.csv")


def check_columns(source: Path, rows: list[dict], names: list[str], task: Any) -> None:
    """The input's own columns stay as they are: one named as a prediction column would be
    overwritten, so it is one line before anything loads."""

    ours = prediction_columns(names, task)
    if clash := [c for c in (rows[0] if rows else {}) if c in ours]:
        raise UserError(
            f"input={source}: its column '{clash[0]}' would be overwritten by the predictions "
            f"(they add {', '.join(ours)}); rename that column, or give the file without it"
        )


def _tally(task: Any, outputs: np.ndarray, names: list[str]) -> str:
    """How many texts got each label (multi_label: each label), or the values' mean."""

    if task.NAME == "regression":
        return f"mean {names[0]} {outputs.mean():.4g}"
    if task.NAME == "multi_label":
        per = (outputs >= task.threshold).sum(0)
    else:
        per = np.bincount(outputs.argmax(-1), minlength=len(names))
    return ", ".join(f"{n} {int(c)}" for n, c in zip(names, per, strict=True))


def _load(args: dict, found: Opened) -> Predictor:

    progress.quiet_libraries()
    return found.predictor(args["device"])


if __name__ == "__main__":
    run_command(main)
