"""What a run leaves in its folder: metrics.json (written last), the report, the best model."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
REPORT_FILE = "classification_report.txt"
BEST_MODEL_DIR = "best_model"
PREDICTIONS_FILE = "test_predictions.csv"
ERROR_FILE = "error.txt"  # a failed job of a sweep: its traceback (src.summarize.SweepSummary)


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_predictions(path: Path, labels, logits, label_names: list[str]) -> None:
    """One row per test example (split order): true label, predicted label, class probabilities."""
    import numpy as np

    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    probs = shifted / shifted.sum(-1, keepdims=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "label", "prediction", *(f"p_{n}" for n in label_names)])
    for i, (y, p) in enumerate(zip(labels, probs, strict=True)):
        writer.writerow([i, label_names[y], label_names[int(p.argmax())], *(f"{v:.6f}" for v in p)])
    write_atomic(path, buffer.getvalue())


def save_model(folder: Path, model, tokenizer) -> None:
    """A save_pretrained folder (config, safetensors weights, tokenizer) that reloads alone."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
