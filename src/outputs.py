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
STATUS_FILE = "status.json"
STATUSES = ("running", "finished", "failed", "preempted")
CONFIG_FILE = "config_resolved.yaml"
PREPROCESSING_FILE = "preprocessing.json"  # in best_model/: how texts were cut for this model
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


def write_status(run_dir: Path, status: str, detail: str | None = None) -> None:
    """`running` until the end; a folder whose status is not `finished` is not a finished run."""
    assert status in STATUSES, status
    write_json(run_dir / STATUS_FILE, {"status": status, **({"detail": detail} if detail else {})})


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


def save_model(folder: Path, model, tokenizer, max_length: int, truncation: str) -> None:
    """A save_pretrained folder (config, safetensors weights, tokenizer) that reloads alone.

    It also keeps how training cut the texts (preprocessing.json, read by src.predict) and sets
    the tokenizer's model_max_length to max_length, so that `pipeline(..., truncation=True)`
    never feeds the model more than it was trained on. README.md says how to load it.
    """
    model.save_pretrained(folder)
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(folder)
    write_json(folder / PREPROCESSING_FILE, {"max_length": max_length, "truncation": truncation})
    labels = ", ".join(f"{i}={n}" for i, n in sorted(model.config.id2label.items()))
    custom = bool(getattr(model.config, "custom_head", None))
    write_atomic(
        folder / "README.md",
        (_CUSTOM_HEAD_CARD if custom else _HF_HEAD_CARD).format(
            labels=labels, max_length=max_length, truncation=truncation
        ),
    )


_HF_HEAD_CARD = """\
# Text classifier (hf_head)

Labels: {labels}. Trained on {max_length} word pieces per text, `{truncation}` truncation.

Load it with transformers alone:

```python
from transformers import pipeline

classify = pipeline("text-classification", model="path/to/best_model")
classify("A gripping, beautifully acted film.", truncation=True, top_k=None)
```

`truncation=True` keeps the first {max_length} word pieces (`head`). To cut long texts exactly
as in training (`{truncation}`), predict from the project root with the run folder:

```bash
python -m src.predict run_dir=path/to/run text="A gripping, beautifully acted film."
```
"""

_CUSTOM_HEAD_CARD = """\
# Text classifier (custom_head)

Labels: {labels}. Trained on {max_length} word pieces per text, `{truncation}` truncation.

An encoder with the project's own head (pooling -> dropout -> Linear; `custom_head` in
config.json), which transformers' Auto classes do not know. From the project root:

```python
from transformers import AutoTokenizer

from src.models import load_trained

model = load_trained("path/to/best_model").eval()
tokenizer = AutoTokenizer.from_pretrained("path/to/best_model")
```

or predict with the same `{truncation}` truncation as in training:

```bash
python -m src.predict run_dir=path/to/run text="A gripping, beautifully acted film."
python -m src.predict run_dir=path/to/run input=reviews.csv
```
"""
