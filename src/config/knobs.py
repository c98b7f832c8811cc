"""The top-level knobs of conf/config.yaml (what people sweep), declared here and only here;
and src.evaluate's top-level keys (conf/evaluate.yaml).

A knob is the one home of its default (`seed: 42`, `dropout: 0.1`): the groups read it by
interpolation (`trainer.seed: ${seed}`) and declare that key with no default of their own. A
knob whose default depends on the option chosen reads it from that group in conf/config.yaml
(`lr: ${backbone.lr}`, `epochs: ${task.epochs}`) and declares no default here either. The
knobs' own vocabulary (the truncation strategies, the chunk poolings, what class_weights takes)
is defined here and imported by the packages that act on it. The checks one key alone cannot
make and that span groups are each group's own (`Spec.check`: the backbone's positions and
levers, the task's metric and data, the data files); `Knobs.check_against` makes the knobs'.
Imports the standard library and src.config's errors, schema and devices only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, ClassVar

from src.config.devices import DEVICE, check_device
from src.config.errors import UserError
from src.config.rundir import holds_checkpoint
from src.config.schema import Spec, fields, param

MIN_MAX_LENGTH = 3  # [CLS], one word piece, [SEP]
TRUNCATIONS = ("head", "tail", "head_tail", "chunks")  # how a text longer than max_length is cut
CHUNK_POOLINGS = ("logits", "probs")  # how a document's windows are pooled (chunk_pooling)


def class_weights_ok(value: Any) -> bool:
    """`balanced`, or one positive number per label."""
    if value == "balanced":
        return True
    numbers = isinstance(value, list) and all(
        isinstance(w, int | float) and not isinstance(w, bool) for w in value
    )
    return numbers and len(value) > 0 and all(w > 0 for w in value)


CLASS_WEIGHTS = {
    "test": class_weights_ok,
    "allowed": "balanced, or a list of positive numbers (one per label)",
}


@dataclass(kw_only=True)
class Knobs(Spec):
    """The run's top-level knobs."""

    NODES: ClassVar[tuple[str, ...]] = (
        "dataset",
        "task",
        "backbone",
        "model",
        "trainer",
        "optimizer",
        "scheduler",
        "logger",
        "metrics",
    )

    seed: int = param(42, "seeds the weights' init, dropout and batch order (not the split)")
    lr: float = param(MISSING, "the peak learning rate (the backbone's step for its size)", gt=0)
    epochs: int = param(
        MISSING,
        "passes over the training split (the task's; more to reach trainer.min_steps)",
        ge=1,
    )
    batch_size: int = param(16, "examples per step and process (global = x processes)", ge=1)
    eval_batch_size: int = param(32, "examples per evaluation batch", ge=1)
    max_length: int = param(
        MISSING,
        "word pieces per window the backbone reads ([CLS] and [SEP] in; the backbone's)",
        ge=MIN_MAX_LENGTH,
    )
    truncation: str = param(
        "chunks",
        "chunks: every word piece, in windows of max_length; head, tail, head_tail: "
        "one cut per text (sentence pairs need one)",
        choices=TRUNCATIONS,
    )
    stride: int = param(
        0, "truncation=chunks: word pieces two neighbouring windows share; 0: none", ge=0
    )
    chunk_pooling: str = param(
        "logits",
        "chunks: a text's prediction is the mean of its windows' logits or probs",
        choices=CHUNK_POOLINGS,
    )
    dropout: float = param(0.1, "the classifier dropout of either head", ge=0, lt=1)
    device: str = param("auto", "auto = cuda, else mps, else cpu", **DEVICE)
    compile: bool = param(False, "torch.compile the training forward")
    resume: str | None = param(None, "auto (this run's newest checkpoint) or a run folder")
    tokenize_cache: str | None = param(
        "outputs/cache/tokenized",
        "tokenized splits, keyed by texts, tokenizer, max_length and "
        "truncation: a sweep's jobs and reruns tokenize once; null: off",
    )
    class_weights: str | list | None = param(
        MISSING,
        "weights the loss per class (the task's): balanced (inverse frequency) or one "
        "weight per label",
        **CLASS_WEIGHTS,
    )

    def check_against(self, plain: Mapping[str, Any]) -> None:
        """What the knobs alone cannot tell: a knob of windows with one cut per text, a stride
        past half a window, a resume path, a device this machine lacks."""
        if self.truncation != "chunks":  # a knob of windows, with one cut per text
            for key in ("stride", "chunk_pooling"):
                value, default = getattr(self, key), fields(Knobs)[key][0].default
                if value != default:
                    raise UserError(
                        f"{key}={value}: only truncation=chunks reads it (truncation="
                        f"{self.truncation} cuts each text once); drop it, or set truncation=chunks"
                    )
        if self.truncation == "chunks" and self.stride > self.max_length // 2:
            raise UserError(
                f"stride={self.stride}: an integer from 0 to {self.max_length // 2} (half of "
                "max_length: windows would barely advance)"
            )
        if self.resume not in (None, "", "auto") and not Path(self.resume).exists():
            raise UserError(
                f"resume={self.resume}: no such checkpoint or run folder; use resume=auto or "
                "the path of a run folder"
            )
        if self.resume not in (None, "", "auto") and not holds_checkpoint(Path(self.resume)):
            raise UserError(
                f"resume={self.resume}: no complete checkpoint there (a finished run keeps none "
                "unless trainer.keep_checkpoints=true); give an interrupted run's folder or one "
                "of its checkpoints"
            )
        check_device("device", self.device)
        check_device("trainer.device", plain["trainer"].get("device", "auto"))


@dataclass
class Evaluation(Spec):
    """python -m src.evaluate: which run, and how to feed it."""

    run_dir: str = param(
        MISSING, "a finished run or job folder, its best_model/, an export or an evaluation"
    )
    batch_size: int = param(32, "texts per forward pass", ge=1)
    device: str = param("auto", "auto = cuda, else mps, else cpu", **DEVICE)
