"""What a run leaves in its folder: metrics.json (written last), the report, the best model."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from src.trainers.common import TrainResult

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

METRICS_FILE = "metrics.json"
REPORT_FILE = "classification_report.txt"
BEST_MODEL_DIR = "best_model"
PREDICTIONS_FILE = "test_predictions.csv"
STATUS_FILE = "status.json"
STATUSES = ("running", "finished", "failed", "preempted")
# How a run's latest attempt began: new; over an unfinished earlier attempt (failed, killed)
# without a checkpoint; from its newest checkpoint; or not at all, as it had finished
# (`resume=auto` on a finished run, e.g. a sweep run again: its recorded metric is returned).
STARTS = ("fresh", "rerun", "resumed", "skipped")
CONFIG_FILE = "config_resolved.yaml"
PREPROCESSING_FILE = "preprocessing.json"  # in best_model/: how texts were cut for this model
ERROR_FILE = "error.txt"  # a failed job of a sweep: its traceback (src.summarize.SweepSummary)


@dataclass
class RunSummary:
    """What a finished run reports (metrics.json): the trainer's TrainResult, the test metrics
    and what ran where."""

    test: dict[str, float]
    test_ci95: dict[str, list[float]]  # a bootstrap interval for each core test metric
    result: TrainResult  # history, train_log, best epoch, train_seconds (no eval, no saving)
    metric: str  # metric_for_best_model (metrics.json: best_eval_<metric>)
    eval_split: str  # which split chose the epoch: validation, or test (the notebook's way)
    device: str
    precision: str
    processes: int
    backbone: str
    model: str
    trainer: str
    sizes: dict[str, int]  # n_train, n_eval, n_test
    label_names: list[str]
    seconds: dict[str, float]  # wall time of build (data, tokenizer, model), fit, test, save
    resumed_from: str | None  # the checkpoint this attempt continued from

    @classmethod
    def of(cls, built: Any, result: TrainResult, test: dict, ci: dict,
           seconds: dict[str, float], resumed_from: str | None) -> RunSummary:  # fmt: skip
        """From what src.run built, the trainer's TrainResult, the test metrics and intervals,
        and the seconds each phase of the run took."""
        from src.distributed import world_size

        corpus, trainer = built.corpus, built.trainer
        sizes = {f"n_{k}": len(getattr(corpus, k)) for k in ("train", "eval", "test")}
        return cls(test, ci, result, trainer.metric, corpus.eval_split, str(trainer.device),
                   trainer.precision, world_size(), built.backbone.name, type(built.model).__name__,
                   type(trainer).__name__, sizes, list(corpus.label_names), seconds,
                   resumed_from)  # fmt: skip

    @property
    def best_metric(self) -> float | None:
        return self.result.best_metric

    def to_json(self) -> dict:
        """metrics.json: the TrainResult's fields inline, the best eval value as best_eval_<f1>."""
        out = {"test": self.test, "test_ci95": self.test_ci95, **asdict(self.result)}
        out[f"best_eval_{self.metric}"] = out.pop("best_metric")
        out["train_seconds"] = round(self.result.train_seconds, 2)
        out["train_samples_per_second"] = round(self.result.samples_per_second, 3)
        rest = {
            k: v
            for k, v in vars(self).items()
            if k not in ("test", "test_ci95", "result", "metric")
        }
        seconds = {k: round(v, 2) for k, v in rest.pop("seconds").items()}
        seconds["total"] = round(sum(seconds.values()), 2)  # from config to metrics.json
        return {**out, **rest.pop("sizes"), **rest, "seconds": seconds}


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


def write_status(run_dir: Path, status: str, detail: str | None = None, start: str = "") -> None:
    """`running` until the end; a folder whose status is not `finished` is not a finished run.
    `start` says how this attempt began (START)."""
    assert status in STATUSES and start in ("", *STARTS), (status, start)
    record = {"status": status, **({"start": start} if start else {})}
    write_json(run_dir / STATUS_FILE, {**record, **({"detail": detail} if detail else {})})


def read_status(run_dir: Path) -> dict:
    """status.json of a run folder ({} for a folder no run has started in)."""
    path = run_dir / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def start_of(previous: dict, resumed_from: str | None) -> str:
    """How an attempt began: from a checkpoint, over an earlier unfinished attempt, or new."""
    if resumed_from:
        return "resumed"
    return "rerun" if previous else "fresh"


def write_predictions(path: Path, labels, logits, label_names: list[str]) -> None:
    """One row per test example (split order): true label, predicted label, class probabilities."""
    import numpy as np

    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    rows = [{"index": i, "label": label_names[y]} for i, y in enumerate(labels)]
    write_atomic(path, predictions_csv(rows, shifted / shifted.sum(-1, keepdims=True), label_names))


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
