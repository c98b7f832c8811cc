"""metrics.json: what a finished run reports, written by `RunSummary` (src.run, last of all
its files) and read back through src.config.rundir's `read_metrics` by every command; the
test texts' fingerprint that pairs runs scored on the same texts; test_predictions.csv read
back for paired tests."""

from __future__ import annotations

import csv
import hashlib
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from src.config.rundir import PREDICTIONS_FILE, best_key, not_finished
from src.models import parameter_counts
from src.trainers.common import TrainResult
from src.trainers.distributed import world_size


@dataclass
class RunSummary:
    """metrics.json: the trainer's TrainResult, the test metrics and what ran where."""

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
    test_sha256: str = ""  # the test texts, in order: runs scored on the same ones pair up
    task: dict = field(default_factory=dict)  # the task's name and what it decided with
    parameters: dict = field(default_factory=dict)  # total, trainable; LoRA: adapter_bytes
    warnings: list = field(default_factory=list)  # e.g. the test split's model predicts one thing
    latency_ms: float | None = None  # milliseconds per test text, scored in batches
    peak_memory_mb: float | None = None  # build to test (src.config.devices.peak_memory_mb)
    # the folder the run was started in: its relative data paths point from it (Opened)
    started_in: str = field(default_factory=lambda: str(Path.cwd()))
    # this training's model, also in best_model/preprocessing.json and so in every export and
    # evaluation made from it: one made before the folder was trained again is told apart
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def of(
        cls,
        built: Any,
        result: TrainResult,
        test: Any,
        seconds: dict[str, float],
        resumed_from: Path | None,
    ) -> RunSummary:
        """From what src.run built (corpus, trainer, backbone, model, what it warns of), the
        trainer's result, the scored test split (metrics, intervals, latency), the seconds
        each phase of the run took and the checkpoint it resumed from."""

        corpus, trainer = built.corpus, built.trainer
        sizes = {f"n_{k}": len(getattr(corpus, k)) for k in ("train", "eval", "test")}
        resumed = str(resumed_from) if resumed_from else None
        return cls(
            test.scores,
            test.ci,
            result,
            trainer.metric,
            corpus.eval_split,
            str(trainer.device),
            trainer.precision,
            world_size(),
            built.backbone.name,
            type(built.model).__name__,
            type(trainer).__name__,
            sizes,
            list(corpus.label_names),
            seconds,
            resumed,
            texts_sha256(corpus.test.texts),
            built.task.state(),
            parameter_counts(built.model),
            list(built.warnings),
            round(test.latency_ms, 3),
        )

    @property
    def best_metric(self) -> float | None:
        return self.result.best_metric

    def to_json(self) -> dict:
        """metrics.json: the TrainResult's fields inline, the best eval value as best_eval_<f1>."""
        out = {"test": self.test, "test_ci95": self.test_ci95, **asdict(self.result)}
        out[best_key(self.metric)] = out.pop("best_metric")
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


def texts_sha256(texts: list[str]) -> str:
    """A fingerprint of texts in their order (each one's end marked, so no two lists share it)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()


def read_predictions(folder: Path) -> tuple[list[str], list[str]]:
    """test_predictions.csv's `label` and `prediction` columns as written, in test-split order
    (what they hold is the task's: src.tasks' `read_cells` reads them)."""

    path = folder / PREDICTIONS_FILE
    if not path.is_file():
        raise not_finished(folder, PREDICTIONS_FILE)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["label"] for r in rows], [r["prediction"] for r in rows]
