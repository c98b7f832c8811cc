"""What a run writes besides its records: the best model folder and the predictions CSV.

The folder's file names, atomic writes and metrics.json are src.config.rundir's.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from src.config.rundir import (
    BEST_MODEL_DIR,
    METRICS_FILE,
    PREDICTIONS_FILE,
    PREPROCESSING_FILE,
    REPORT_FILE,
    write_atomic,
    write_json,
)
from src.models import lora
from src.outputs import card, reports
from src.outputs.results import RunSummary
from src.tasks import metrics

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from src.tasks import Task

log = logging.getLogger("src.run")


def write_predictions(
    path: Path, corpus_labels, logits, label_names: list[str], task: Task
) -> None:
    """One row per test example (split order): the true label (a label, a JSON list of labels,
    a value), the prediction and, for classification, each label's probability."""
    rows = [
        {"index": i, "label": task.label_cell(y, label_names)} for i, y in enumerate(corpus_labels)
    ]
    write_atomic(path, predictions_csv(rows, task.outputs(logits), label_names, task))


PREDICTION_FORMATS = (".csv", ".tsv", ".jsonl")  # src.predict's output=, by its extension


def predictions_csv(
    rows: list[dict], outputs, label_names: list[str], task: Task, suffix: str = ".csv"
) -> str:
    """`rows`' columns, then the task's: `prediction` (a label, a JSON list of the labels
    predicted, a value) and, for classification, one `p_<label>` probability per label; as
    CSV, TSV (`suffix` .tsv) or JSON Lines (.jsonl: one object a row, lists and numbers as
    JSON has them)."""
    cells = [None if out is None else task.prediction_cells(out, label_names) for out in outputs]
    extra = list(next((c for c in cells if c is not None), None) or {"prediction": ""})
    blank = "" if suffix != ".jsonl" else None  # a row with no text: no prediction
    cells = [c if c is not None else dict.fromkeys(extra, blank) for c in cells]
    columns = [c for c in dict.fromkeys(key for row in rows for key in row) if c not in extra]
    if suffix == ".jsonl":
        numbers = [c for c in extra if c.startswith("p_")]
        numbers += ["prediction"] if task.NAME == "regression" else []
        return "".join(
            json.dumps(
                {
                    **{c: row.get(c) for c in columns},
                    **cell,
                    **{c: float(cell[c]) for c in numbers if cell[c] is not None},
                },
                ensure_ascii=False,
            )
            + "\n"
            for row, cell in zip(rows, cells, strict=True)
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", delimiter="\t" if suffix == ".tsv" else ",")
    writer.writerow(columns + extra)
    for row, cell in zip(rows, cells, strict=True):
        writer.writerow([_cell(row.get(c)) for c in columns] + [_cell(cell[c]) for c in extra])
    return buffer.getvalue()


def prediction_columns(label_names: list[str], task: Task) -> list[str]:
    """The columns `predictions_csv` adds after a table's own: `prediction`, and for
    classification one `p_<label>` per label."""

    return list(task.prediction_cells(np.zeros(len(label_names)), label_names))


def _cell(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def save_model(
    folder: Path,
    model,
    tokenizer,
    card: ModelCard,
    max_length: int,
    truncation: str,
    stride: int = 0,
    chunk_pooling: str = "logits",
    task: dict | None = None,
    pairs: dict | None = None,
    run_id: str | None = None,
) -> None:
    """A save_pretrained folder (config, safetensors weights, tokenizer) that reloads alone.

    It also keeps how training cut the texts and what the task decides with (preprocessing.json,
    read by src.predict: multi_label's threshold) and sets
    the tokenizer's model_max_length to max_length, so that `pipeline(..., truncation=True)`
    never feeds the model more than it was trained on. README.md is `card` (src.outputs.card), the
    Hugging Face model card: how to load it, its test metrics, how it was trained.
    """
    model.save_pretrained(folder)
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(folder)
    cut = {"max_length": max_length, "truncation": truncation}
    if truncation == "chunks":
        cut.update(stride=stride, chunk_pooling=chunk_pooling)
    if task:
        cut["task"] = task
    if pairs:  # a sentence-pair model: its columns, so src.predict asks for both texts
        cut["pairs"] = pairs
    if run_id:  # which training of its run folder made it (metrics.json's run_id)
        cut["run_id"] = run_id
    write_json(folder / PREPROCESSING_FILE, cut)
    write_atomic(folder / "README.md", str(card))


def save_run(built, cfg, run_dir: Path, summary: RunSummary, truth, logits) -> list[Path]:
    """What a finished run leaves: the best model, the predictions, the reports, and
    metrics.json last. Returns the report files (what the logger keeps as artifacts).
    `truth` is the test labels as the metrics take them (src.trainers.build.Built.score_test).

    It changes `built.model` to what is saved: regression's last layer scaled to the label's
    units, LoRA's adapters merged in (best_model/adapter/ keeps them apart). The record the
    card, the reports and metrics.json show is taken after both, adapter_bytes included."""

    task, names = built.task, built.corpus.label_names
    start, preds = time.perf_counter(), task.decide(logits)
    write_predictions(run_dir / PREDICTIONS_FILE, built.corpus.test.labels, logits, names, task)
    task.export(built.model)  # regression: the saved model predicts in the label's units
    folder = run_dir / BEST_MODEL_DIR
    if cfg.model.get("peft") == "lora":  # best_model/: the adapters merged in; adapter/: them
        trained = lora.merge(built.model)
        summary.parameters["adapter_bytes"] = lora.save_adapter(
            folder / lora.ADAPTER_DIR, trained, dict(cfg.model.lora), built.model.config.model_type
        )
    record = summary.to_json()
    cut = {k: cfg[k] for k in ("max_length", "truncation", "stride", "chunk_pooling")}
    decides = {k: v for k, v in record["task"].items() if k in ("name", "threshold")}
    pair_column = cfg.dataset.get("text_pair_column")
    pairs = (
        {"text_column": cfg.dataset.get("text_column", "text"), "text_pair_column": pair_column}
        if pair_column
        else None
    )
    save_model(
        folder,
        built.model,
        built.tokenizer,
        card.model_card(cfg, record),
        **cut,
        task=decides,
        pairs=pairs,
        run_id=record["run_id"],
    )
    report = metrics.report(truth, preds, names, task.NAME)
    write_atomic(run_dir / REPORT_FILE, report)
    artifacts = reports.write(run_dir, cfg, record, truth, preds, report)
    summary.seconds["save"] = time.perf_counter() - start
    write_json(run_dir / METRICS_FILE, summary.to_json())
    log.info("wrote %s", run_dir)
    return artifacts
