"""The top-level knobs of conf/config.yaml (what people sweep), declared once.

The groups read them by interpolation (`trainer.epochs: ${epochs}`); the checks that span
groups (max_length against the backbone, a resume path, a device that is not there) run here,
before anything loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from src.data import TRUNCATIONS
from src.errors import UserError
from src.metrics import POOLINGS
from src.spec import Spec, param, position_limit
from src.trainers import DEVICE, check_device

MIN_MAX_LENGTH = 3  # [CLS], one word piece, [SEP]


@dataclass
class Knobs(Spec):
    """The run's top-level knobs."""

    NODES: ClassVar[tuple[str, ...]] = ("dataset", "backbone", "model", "trainer", "optimizer",
                                        "scheduler", "logger", "metrics")  # fmt: skip

    seed: int = param(42, "seeds the weights' init, dropout and batch order (not the split)")
    lr: float = param(1e-4, "peak learning rate (optimizer.lr)", gt=0)
    epochs: int = param(2, "passes over the training split", ge=1)
    batch_size: int = param(16, "training examples per step and process", ge=1)
    eval_batch_size: int = param(32, "examples per evaluation batch", ge=1)
    max_length: int = param(256, "word pieces per text, [CLS] and [SEP] in", ge=MIN_MAX_LENGTH)
    truncation: str = param("head_tail", "which word pieces a long text keeps", choices=TRUNCATIONS)
    stride: int = param(64, "truncation=chunks: word pieces two windows share", ge=0)
    chunk_pooling: str = param("logits", "chunks: mean of logits or probs", choices=POOLINGS)
    dropout: float = param(0.1, "the classifier dropout of either head", ge=0, lt=1)
    device: str = param("auto", "auto = cuda, else mps, else cpu", **DEVICE)
    compile: bool = param(False, "torch.compile the training forward")
    resume: str | None = param(None, "auto (this run's newest checkpoint) or a run folder")
    tokenize_cache: str | None = param(
        "outputs/cache/tokenized", "folder of tokenized splits shared by runs; null: tokenize anew"
    )
    class_weights: str | list | None = param(
        None, "weights the loss per class: balanced (inverse frequency) or one weight per label",
        test=lambda v: v == "balanced" or (isinstance(v, list) and len(v) > 0 and all(
            isinstance(w, int | float) and not isinstance(w, bool) and w > 0 for w in v)),
        allowed="balanced, or a list of positive numbers (one per label)",
    )  # fmt: skip

    def check_against(self, plain: Mapping[str, Any]) -> None:
        """What one key alone cannot tell: limits of the backbone, paths, devices."""
        limit = position_limit(plain["backbone"])
        if limit is not None and self.max_length > limit:
            raise UserError(
                f"max_length={self.max_length}: an integer from {MIN_MAX_LENGTH} to {limit} "
                f"(max_position_embeddings of backbone {plain['backbone'].get('name')})"
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
        check_device("device", self.device)
        check_device("trainer.device", plain["trainer"].get("device", "auto"))
