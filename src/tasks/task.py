"""Tasks (conf/task/): what one example's label is, and everything that follows from it.

    python -m src.run                                  # task=single_label: one class of several
    python -m src.run task=multi_label dataset=files dataset.train_file=tags.jsonl
    python -m src.run task=regression dataset=files dataset.train_file=scores.csv

A task owns how a data file's labels are read (`label_names`, `encode`) and whether splits
stratify on them; what the model is trained to output (`to_targets`, `PROBLEM_TYPE`, which hf_head
sets as transformers' `problem_type` and custom_head follows, and what `class_weights` means);
how logits become predictions (`decide`); which metrics score it and which of them may choose
the best epoch (src.tasks.metrics.TASK_METRICS, each with its direction); what test_predictions.csv
holds (`label_cell`, `prediction_cells`, `read_cells`); src.outputs.reports draws its test plot.
No torch is imported until a loss is built or a model exported.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from hydra.utils import get_class

from src.config.errors import UserError
from src.config.knobs import CLASS_WEIGHTS
from src.config.schema import Spec, param
from src.tasks.inference import softmax
from src.tasks.metrics import TASK_METRICS, TASKS, compute

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # tune_threshold's candidates
CONSTANT_SHARE = 0.95  # single_label: one class for this share of the texts is one answer
FLAT_SPREAD = 0.05  # regression: predictions spread under this share of the labels' spread


def _metric(task: str, default: str):
    return param(
        default, f"picks the best epoch by default ({task}'s metrics)", choices=TASK_METRICS[task]
    )


def label_list(labels: Sequence[str]) -> list[str]:
    """Sorted unique labels (run_classification.py's rule); numeric labels sort as numbers."""
    unique = set(labels)
    try:
        return sorted(unique, key=float)
    except ValueError:
        return sorted(unique)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(np.asarray(logits, np.float64), -60, 60)))


@dataclass
class Task(Spec):
    """What every task answers (single_label's answers are the notebook's)."""

    NAME: ClassVar[str] = "single_label"
    PROBLEM_TYPE: ClassVar[str] = "single_label_classification"
    STRATIFY: ClassVar[bool] = True  # splits keep each label's share
    WEIGHTED_LOSS: ClassVar[str] = "cross-entropy weighted per class"  # with class_weights

    best_metric: str = _metric("single_label", "f1")
    # The `epochs` and `class_weights` knobs read these: what each task learns with by default.
    epochs: int = param(2, "passes over the training split (the epochs knob reads it)", ge=1)
    class_weights: str | list | None = param(
        None,
        "weights the loss per class: balanced (inverse frequency) or one weight per label "
        "(the class_weights knob reads it)",
        **CLASS_WEIGHTS,
    )

    @property
    def metrics(self) -> tuple[str, ...]:
        return TASK_METRICS[self.NAME]

    def check(self, plain: Mapping[str, Any]) -> None:
        """What this task refuses of a whole config (validation, before anything loads)."""
        chosen = plain["trainer"].get("metric_for_best_model")
        if chosen not in self.metrics:
            raise UserError(
                f"trainer.metric_for_best_model={chosen}: not a metric of task={self.NAME}; "
                f"use one of {', '.join(self.metrics)}"
            )
        allowed = getattr(_target_class(plain["dataset"]), "TASKS", TASKS)
        if self.NAME not in allowed:
            raise UserError(
                f"task={self.NAME}: dataset {plain['dataset']['_target_']} has one label per "
                f"text; use task={allowed[0]}, or dataset=files / dataset=hf with your labels"
            )

    # --- labels, as read from data -----------------------------------------------------------

    def label_names(self, raw: Sequence, dataset: Any) -> list[str]:
        """The label names of a training split (index = id): sorted, numbers as numbers."""
        return label_list([str(y) for y in raw])

    def unseen(self, raw: Sequence, names: Sequence[str], dataset: Any) -> list[str]:
        """Labels of `raw` outside `names`, sorted."""
        return sorted({str(y) for y in raw} - set(names))

    def encode(self, raw: Sequence, names: Sequence[str], where: str, dataset: Any) -> list:
        """Raw labels (strings as read) -> what the corpus holds: label ids here."""
        ids = {name: i for i, name in enumerate(names)}
        return [ids[str(y)] for y in raw]

    def check_names(self, names: Sequence[str], where: str) -> None:
        if len(names) < 2:
            raise UserError(f"{where}: only one label ({names[0]}); a classifier needs two or more")

    def counts(self, labels: Sequence, names: Sequence[str]) -> dict[str, int] | None:
        """Examples per label, for the log (None: not a count, `describe` says it)."""
        return {name: list(labels).count(i) for i, name in enumerate(names)}

    def describe(self, labels: Sequence) -> str:
        return ""

    def fit(self, labels: Sequence) -> None:
        """Learn from the training labels what the targets need (regression: their scale)."""

    # --- what the model is trained on, and its loss -------------------------------------------

    def to_targets(self, labels: Sequence, k: int) -> list:
        """The corpus' labels -> what the model is trained on: each example's `labels`."""
        return list(labels)

    def truth(self, labels: Sequence, k: int) -> np.ndarray:
        """The corpus' labels -> what the metrics compare with predictions."""
        return np.asarray(labels, dtype=np.int64)

    def truth_of_targets(self, targets: np.ndarray) -> np.ndarray:
        """The model's targets (as the trainers batch them) -> what the metrics compare."""
        return np.asarray(targets).astype(np.int64)

    def weights(self, setting: str | list | None, labels: Sequence, names: Sequence[str]):
        """`class_weights`: null (an unweighted loss), `balanced` (n / (n_classes * count), as
        scikit-learn's compute_class_weight: each class weighs the same in total), or one weight
        per label in label-id order."""
        if setting is None:
            return None
        if setting == "balanced":
            counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(names))
            if (counts == 0).any():
                missing = [n for n, c in zip(names, counts, strict=True) if c == 0]
                raise UserError(f"class_weights=balanced: no training example of {missing}")
            return (len(labels) / (len(names) * counts)).tolist()
        return _one_per_label(setting, names)

    def loss(self, weights: list[float] | None):
        """(logits, targets) -> the loss, when `class_weights` weights it; None: the model's
        own loss (transformers' for its problem_type, under either head).

        Each example's cross-entropy times its class's weight, averaged over the batch: Keras'
        and scikit-learn's class_weight, not torch's `weight=` (which divides by the batch's
        summed weights, so a batch of one class trains as if unweighted). With `balanced` the
        weights average 1 over the training data: the loss keeps its scale."""
        if weights is None:
            return None
        import torch
        import torch.nn.functional as F

        weight = torch.tensor(weights)

        def weighted(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            losses = F.cross_entropy(logits.float(), labels, reduction="none")
            return (losses * weight.to(losses.device)[labels]).mean()

        return weighted

    def loss_line(self, weights: list[float], names: Sequence[str]) -> str:
        named = ", ".join(f"{n} {w:.3g}" for n, w in zip(names, weights, strict=True))
        return f"loss: {self.WEIGHTED_LOSS} ({named})"

    # --- predictions ----------------------------------------------------------------------------

    def outputs(self, logits: np.ndarray) -> np.ndarray:
        """What a user reads per text: class probabilities here."""
        return softmax(logits)

    def decide(self, logits: np.ndarray) -> np.ndarray:
        """Logits -> predictions, as the metrics take them: label ids here."""
        return np.asarray(logits).argmax(-1)

    def score(self, truth: np.ndarray, preds: np.ndarray, k: int) -> dict[str, float]:
        return compute(truth, preds, k, self.NAME)

    def degenerate(
        self, truth: np.ndarray, preds: np.ndarray, names: Sequence[str] | None = None
    ) -> str | None:
        """One line naming the likely fix when the model predicts one thing: here one class
        for 95% of the texts or more, where the labels' largest class holds under two thirds."""
        preds, truth = np.asarray(preds), np.asarray(truth)
        if not len(preds):
            return None
        top = np.bincount(preds).argmax()
        share, largest = (preds == top).mean(), np.bincount(truth).max() / len(truth)
        if share < CONSTANT_SHARE or largest >= 2 / 3:
            return None
        name = names[top] if names is not None else str(top)
        return (
            f"the model predicts '{name}' for {share:.0%} of the texts (the labels' largest "
            f"class: {largest:.0%}): it learnt one answer; try more epochs "
            "(trainer.min_steps), another lr, or class_weights=balanced"
        )

    def tune(self, logits: np.ndarray, truth: np.ndarray, k: int) -> None:
        """Choose what the task decides with on the validation split (multi_label's threshold)."""

    def state(self) -> dict:
        """What metrics.json and best_model/preprocessing.json record of the task."""
        return {"name": self.NAME}

    def export(self, model: torch.nn.Module) -> None:
        """Make the trained model's outputs what a user reads, before it is saved."""

    # --- test_predictions.csv -------------------------------------------------------------------

    def label_cell(self, label: Any, names: Sequence[str]) -> Any:
        return names[int(label)]

    def prediction_cells(self, output: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
        """One text's columns: `prediction`, then one `p_<label>` probability per label."""
        probs = {f"p_{n}": f"{v:.6f}" for n, v in zip(names, output, strict=True)}
        return {"prediction": names[int(np.argmax(output))], **probs}

    def read_cells(self, cells: Sequence[str], names: Sequence[str]) -> np.ndarray:
        """A test_predictions.csv column (`label` or `prediction`) -> metric-ready values."""
        ids = {name: i for i, name in enumerate(names)}
        return np.asarray([ids[c] for c in cells])


def _one_per_label(setting: list, names: Sequence[str]) -> list[float]:
    if len(setting) != len(names):
        raise UserError(
            f"class_weights={setting}: {len(setting)} weights for {len(names)} labels "
            f"({', '.join(names)}); give one per label in that order, or balanced"
        )
    return [float(w) for w in setting]


def _target_class(node: Mapping) -> Any:

    try:
        return get_class(node["_target_"])
    except Exception:  # validation names a bad target on its own
        return None


@dataclass
class SingleLabel(Task):
    """One label of several per text: softmax, cross-entropy (the notebook's)."""


@dataclass
class MultiLabel(Task):
    """Any set of labels per text (none included): one sigmoid per label, binary cross-entropy.
    Labels: a JSON list in JSONL, `dataset.label_separator`-separated in CSV/TSV, a
    Sequence(ClassLabel) in `datasets`."""

    NAME: ClassVar[str] = "multi_label"
    PROBLEM_TYPE: ClassVar[str] = "multi_label_classification"
    STRATIFY: ClassVar[bool] = False  # label sets do not stratify: a seeded random split
    WEIGHTED_LOSS: ClassVar[str] = "binary cross-entropy, pos_weight per label"

    best_metric: str = _metric("multi_label", "f1_micro")
    # Sparse labels (most texts with none) need both: 2 unweighted epochs learn "no label"
    # (benchmarks/RESULTS_tasks.md, issue 31); early stopping ends what does not help.
    epochs: int = param(
        10,
        "passes over the training split (the epochs knob reads it): sparse labels need more steps",
        ge=1,
    )
    class_weights: str | list | None = param(
        "balanced",
        "balanced: BCE's pos_weight, negatives / positives of each label; or one "
        "weight per label (the class_weights knob reads it)",
        **CLASS_WEIGHTS,
    )
    threshold: float = param(
        0.5, "a label is predicted when its probability reaches this", gt=0, lt=1
    )
    tune_threshold: bool = param(
        False, "choose the threshold with the best micro F1 on the validation split (0.05 steps)"
    )
    tuned: bool = field(default=False, init=False, repr=False)

    def check(self, plain: Mapping[str, Any]) -> None:
        super().check(plain)
        if plain.get("chunk_pooling") == "probs" and plain.get("truncation") == "chunks":
            raise UserError(
                "chunk_pooling=probs: softmax probabilities have no meaning for task=multi_label; "
                "use chunk_pooling=logits"
            )

    def label_names(self, raw: Sequence, dataset: Any) -> list[str]:
        return label_list([y for labels in raw for y in _set(labels, dataset)])

    def unseen(self, raw: Sequence, names: Sequence[str], dataset: Any) -> list[str]:
        return sorted({y for labels in raw for y in _set(labels, dataset)} - set(names))

    def encode(self, raw: Sequence, names: Sequence[str], where: str, dataset: Any) -> list:
        ids = {name: i for i, name in enumerate(names)}
        return [sorted({ids[y] for y in _set(labels, dataset)}) for labels in raw]

    def check_names(self, names: Sequence[str], where: str) -> None:
        if not names:
            raise UserError(f"{where}: no labels in any row; task=multi_label needs one or more")

    def counts(self, labels: Sequence, names: Sequence[str]) -> dict[str, int]:
        found = np.bincount([i for ids in labels for i in ids], minlength=len(names))
        none = sum(1 for ids in labels if not ids)
        return {**dict(zip(names, found.tolist(), strict=True)), "(no label)": none}

    def to_targets(self, labels: Sequence, k: int) -> list:
        return self.truth(labels, k).astype(np.float32).tolist()

    def truth(self, labels: Sequence, k: int) -> np.ndarray:
        hot = np.zeros((len(labels), k), dtype=bool)
        for row, ids in enumerate(labels):
            hot[row, list(ids)] = True
        return hot

    def truth_of_targets(self, targets: np.ndarray) -> np.ndarray:
        return np.asarray(targets) > 0.5

    def weights(self, setting: str | list | None, labels: Sequence, names: Sequence[str]):
        """`class_weights` become BCE's `pos_weight`: balanced = negatives / positives of each
        label in train (what torch's BCEWithLogitsLoss docs suggest), or one per label."""
        if setting is None:
            return None
        if setting == "balanced":
            positives = self.truth(labels, len(names)).sum(0)
            if (positives == 0).any():  # a label the split sent wholly to validation or test
                missing = [n for n, c in zip(names, positives, strict=True) if c == 0]
                log.warning(
                    f"class_weights=balanced: no training example of {missing}; "
                    "weight 1 for it (nothing to balance)"
                )
            return np.where(
                positives > 0, (len(labels) - positives) / np.maximum(positives, 1), 1.0
            ).tolist()
        return _one_per_label(setting, names)

    def loss(self, weights: list[float] | None):
        if weights is None:
            return None
        import torch
        import torch.nn.functional as F

        pos_weight = torch.tensor(weights)

        def weighted(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return F.binary_cross_entropy_with_logits(
                logits.float(), labels.float(), pos_weight=pos_weight.to(logits.device)
            )

        return weighted

    def outputs(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(logits)

    def decide(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(logits) >= self.threshold

    def degenerate(
        self, truth: np.ndarray, preds: np.ndarray, names: Sequence[str] | None = None
    ) -> str | None:
        """No label for every text, or every label for every text."""
        preds = np.asarray(preds, bool)
        if not preds.size or (preds.any() and not preds.all()):
            return None
        which = "no label" if not preds.any() else "every label"
        return (
            f"the model predicts {which} for every text: it learnt one answer; try "
            "more epochs, class_weights=balanced (the default) if it was turned off, or "
            "task.tune_threshold=true"
        )

    def tune(self, logits: np.ndarray, truth: np.ndarray, k: int) -> None:
        """tune_threshold: the grid's threshold with the best micro F1 on `truth` (the
        validation split); ties go to the one nearest 0.5."""
        if not self.tune_threshold:
            return
        probs = sigmoid(logits)

        def f1(t: float) -> float:
            return compute(truth, probs >= t, k, self.NAME)["f1_micro"]

        self.threshold = max(THRESHOLD_GRID, key=lambda t: (f1(t), -abs(t - 0.5)))
        self.tuned = True

    def state(self) -> dict:
        return {"name": self.NAME, "threshold": self.threshold, "threshold_tuned": self.tuned}

    def label_cell(self, label: Any, names: Sequence[str]) -> Any:
        return [names[i] for i in label]

    def prediction_cells(self, output: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
        chosen = [n for n, p in zip(names, output, strict=True) if p >= self.threshold]
        probs = {f"p_{n}": f"{v:.6f}" for n, v in zip(names, output, strict=True)}
        return {"prediction": chosen, **probs}

    def read_cells(self, cells: Sequence[str], names: Sequence[str]) -> np.ndarray:
        ids = {name: i for i, name in enumerate(names)}
        return self.truth([[ids[n] for n in json.loads(c)] for c in cells], len(names))


def _set(labels: Any, dataset: Any) -> list[str]:
    """One example's label set: a list as given, else a string cut at the separator."""
    if isinstance(labels, list | tuple):
        return [str(y).strip() for y in labels if str(y).strip()]
    separator = getattr(dataset, "label_separator", None) or "|"
    return [y.strip() for y in str(labels).split(separator) if y.strip()]


@dataclass
class Regression(Task):
    """One number per text: one output, mean squared error. With `standardize`, the model
    learns (y - mean) / std of the training labels, and the saved model's last layer is scaled
    back, so that every prediction (src.predict, pipeline()) is in the label's units."""

    NAME: ClassVar[str] = "regression"
    PROBLEM_TYPE: ClassVar[str] = "regression"
    STRATIFY: ClassVar[bool] = False  # a seeded random split

    best_metric: str = _metric("regression", "mse")
    standardize: bool = param(
        True,
        "train on (y - mean) / std of the training labels; the saved model's last layer "
        "is scaled back, so predictions come in the label's units",
    )
    mean: float = field(default=0.0, init=False, repr=False)
    std: float = field(default=1.0, init=False, repr=False)

    def check(self, plain: Mapping[str, Any]) -> None:
        super().check(plain)
        if plain.get("class_weights") is not None:
            raise UserError(
                f"class_weights={plain['class_weights']}: no classes in task=regression; "
                "set class_weights=null"
            )
        if plain.get("chunk_pooling") == "probs" and plain.get("truncation") == "chunks":
            raise UserError(
                "chunk_pooling=probs: no probabilities in task=regression; use chunk_pooling=logits"
            )

    def label_names(self, raw: Sequence, dataset: Any) -> list[str]:
        return [str(getattr(dataset, "label_column", "label"))]  # one output, named after it

    def unseen(self, raw: Sequence, names: Sequence[str], dataset: Any) -> list[str]:
        return []

    def encode(self, raw: Sequence, names: Sequence[str], where: str, dataset: Any) -> list:
        out = []
        for n, y in enumerate(raw, start=1):
            try:
                value = float(y)
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise UserError(
                    f"{where} row {n}: label '{y}' is not a finite number (task=regression)"
                )
            out.append(value)
        return out

    def check_names(self, names: Sequence[str], where: str) -> None:
        """One output, whatever the values."""

    def counts(self, labels: Sequence, names: Sequence[str]) -> None:
        return None

    def describe(self, labels: Sequence) -> str:
        y = np.asarray(labels, np.float64)
        return f"mean {y.mean():.4g}, std {y.std():.4g}, min {y.min():.4g}, max {y.max():.4g}"

    def fit(self, labels: Sequence) -> None:
        y = np.asarray(labels, np.float64)
        if self.standardize and len(y):
            self.mean, self.std = float(y.mean()), float(y.std()) or 1.0

    def to_targets(self, labels: Sequence, k: int) -> list:
        return ((np.asarray(labels, np.float64) - self.mean) / self.std).astype(np.float32).tolist()

    def truth(self, labels: Sequence, k: int) -> np.ndarray:
        return np.asarray(labels, np.float64)

    def truth_of_targets(self, targets: np.ndarray) -> np.ndarray:
        return np.asarray(targets, np.float64).reshape(-1) * self.std + self.mean

    def weights(self, setting: str | list | None, labels: Sequence, names: Sequence[str]):
        return None  # validation refuses class_weights

    def outputs(self, logits: np.ndarray) -> np.ndarray:
        return self.decide(logits)

    def decide(self, logits: np.ndarray) -> np.ndarray:
        return np.asarray(logits, np.float64).reshape(len(logits), -1)[:, 0] * self.std + self.mean

    def degenerate(
        self, truth: np.ndarray, preds: np.ndarray, names: Sequence[str] | None = None
    ) -> str | None:
        """Predictions whose spread is under 5% of the labels' (a model that says the mean)."""
        spread, labels = float(np.std(preds)), float(np.std(truth))
        if not len(preds) or labels == 0 or spread >= FLAT_SPREAD * labels:
            return None
        return (
            f"the predictions barely vary (std {spread:.3g}, the labels' {labels:.3g}): "
            "the model learnt one answer; try more epochs (trainer.min_steps) or another lr"
        )

    def state(self) -> dict:
        return {
            "name": self.NAME,
            "standardize": self.standardize,
            "target_mean": self.mean,
            "target_std": self.std,
        }

    def export(self, model: torch.nn.Module) -> None:
        """Fold the targets' scale into the last Linear layer (w * std, b * std + mean), so the
        saved model predicts in the label's units; from then on this task decides unscaled."""
        if self.mean == 0.0 and self.std == 1.0:
            return
        import torch

        last = [m for m in model.classifier.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.mul_(self.std)
            last.bias.mul_(self.std).add_(self.mean)
        self.mean, self.std = 0.0, 1.0

    def label_cell(self, label: Any, names: Sequence[str]) -> Any:
        return f"{float(label):.6g}"

    def prediction_cells(self, output: Any, names: Sequence[str]) -> dict[str, Any]:
        (value,) = np.ravel(output)  # one number a text: a scalar, or the model's one output
        return {"prediction": f"{float(value):.6g}"}

    def read_cells(self, cells: Sequence[str], names: Sequence[str]) -> np.ndarray:
        return np.asarray([float(c) for c in cells])


BY_PROBLEM_TYPE = {t.PROBLEM_TYPE: t for t in (SingleLabel, MultiLabel, Regression)}


def task_class(name: str) -> type[Task]:
    """The task a metrics.json names (src.tasks.metrics.task_of)."""
    return {t.NAME: t for t in BY_PROBLEM_TYPE.values()}[name]


def of_model(config: Any, recorded: Mapping[str, Any]) -> Task:
    """The task a saved model was trained for: its config's problem_type, and what
    preprocessing.json recorded (multi_label's threshold). Its outputs are in label units."""
    kind = BY_PROBLEM_TYPE.get(getattr(config, "problem_type", None) or "", SingleLabel)
    task = kind()
    if isinstance(task, MultiLabel) and "threshold" in recorded:
        task.threshold = float(recorded["threshold"])
    return task
