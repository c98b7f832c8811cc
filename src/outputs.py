"""What a run writes besides its records: the best model folder and the predictions CSV.

The folder's file names, atomic writes and metrics.json are src.rundir's.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from src.metrics import softmax
from src.rundir import (
    BEST_MODEL_DIR,
    METRICS_FILE,
    PREDICTIONS_FILE,
    PREPROCESSING_FILE,
    REPORT_FILE,
    RunSummary,
    write_atomic,
    write_json,
)

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

log = logging.getLogger("src.run")


def write_predictions(path: Path, labels, logits, label_names: list[str]) -> None:
    """One row per test example (split order): true label, predicted label, class probabilities."""
    rows = [{"index": i, "label": label_names[y]} for i, y in enumerate(labels)]
    write_atomic(path, predictions_csv(rows, softmax(logits), label_names))


def predictions_csv(rows: list[dict], probs, label_names: list[str]) -> str:
    """`rows`' columns, then `prediction` and one `p_<label>` probability column per label."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    extra = ["prediction", *(f"p_{n}" for n in label_names)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c for c in columns if c not in extra] + extra)
    for row, p in zip(rows, probs, strict=True):
        kept = [_cell(row.get(c)) for c in columns if c not in extra]
        writer.writerow([*kept, label_names[int(p.argmax())], *(f"{v:.6f}" for v in p)])
    return buffer.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def save_model(folder: Path, model, tokenizer, card: ModelCard, max_length: int, truncation: str,
               stride: int = 0, chunk_pooling: str = "logits") -> None:  # fmt: skip
    """A save_pretrained folder (config, safetensors weights, tokenizer) that reloads alone.

    It also keeps how training cut the texts (preprocessing.json, read by src.predict) and sets
    the tokenizer's model_max_length to max_length, so that `pipeline(..., truncation=True)`
    never feeds the model more than it was trained on. README.md is `card` (src.card), the
    Hugging Face model card: how to load it, its test metrics, how it was trained.
    """
    model.save_pretrained(folder)
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(folder)
    cut = {"max_length": max_length, "truncation": truncation}
    if truncation == "chunks":
        cut.update(stride=stride, chunk_pooling=chunk_pooling)
    write_json(folder / PREPROCESSING_FILE, cut)
    write_atomic(folder / "README.md", str(card))


def save_run(built, cfg, run_dir: Path, summary: RunSummary, labels, logits) -> list[Path]:
    """What a finished run leaves: the best model, the predictions, the reports, and
    metrics.json last. Returns the report files (what the logger keeps as artifacts)."""
    from src import card, metrics, reports

    start, names, preds = time.perf_counter(), built.corpus.label_names, logits.argmax(-1)
    record, folder = summary.to_json(), run_dir / BEST_MODEL_DIR
    cut = {k: cfg[k] for k in ("max_length", "truncation", "stride", "chunk_pooling")}
    save_model(folder, built.model, built.tokenizer, card.model_card(cfg, record), **cut)
    report = metrics.report(labels, preds, names)
    write_atomic(run_dir / REPORT_FILE, report)
    write_predictions(run_dir / PREDICTIONS_FILE, labels, logits, names)
    artifacts = reports.write(run_dir, cfg, record, labels, preds, report)
    summary.seconds["save"] = time.perf_counter() - start
    write_json(run_dir / METRICS_FILE, summary.to_json())
    log.info("wrote %s", run_dir)
    return artifacts
