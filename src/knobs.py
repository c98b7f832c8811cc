"""The top-level knobs of conf/config.yaml (what people sweep), declared once.

The groups read them by interpolation (`trainer.epochs: ${epochs}`). A knob that feeds a group's
key is that key's declaration (`same_as`): one default, one rule, one help line, so
`python -m src.spec trainer` prints what a run uses. The checks that span groups (max_length
against the backbone, a resume path, a device that is not there) run here, before anything
loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from src.backbones import Backbone, local_config, position_limit
from src.data.corpora import check_files
from src.data.tokenize import TRUNCATIONS
from src.devices import check_device
from src.encoders import check_levers
from src.errors import UserError
from src.inference import CHUNK_POOLINGS
from src.models import Head
from src.optim import TorchOptimizer
from src.schema import Spec, fields, param, same_as
from src.tasks import Task
from src.trainers import TrainerConfig

MIN_MAX_LENGTH = 3  # [CLS], one word piece, [SEP]


@dataclass(kw_only=True)
class Knobs(Spec):
    """The run's top-level knobs."""

    # those conf/config.yaml reads from a group (`lr: ${backbone.lr}`: each backbone's step,
    # each task's epochs) declare no default of their own (`read=True`)

    NODES: ClassVar[tuple[str, ...]] = ("dataset", "task", "backbone", "model", "trainer",
                                        "optimizer", "scheduler", "logger", "metrics")  # fmt: skip

    seed: int = same_as(TrainerConfig, "seed")
    lr: float = same_as(TorchOptimizer, "lr", read=True)
    epochs: int = same_as(TrainerConfig, "epochs", read=True)
    batch_size: int = same_as(TrainerConfig, "batch_size")
    eval_batch_size: int = same_as(TrainerConfig, "eval_batch_size")
    max_length: int = same_as(Backbone, "max_length", read=True)
    truncation: str = param(
        "chunks", "chunks: every word piece, in windows of max_length; head, tail, head_tail: "
        "one cut per text (sentence pairs need one)", choices=TRUNCATIONS,
    )  # fmt: skip
    stride: int = param(
        0, "truncation=chunks: word pieces two neighbouring windows share; 0: none", ge=0
    )
    chunk_pooling: str = param(
        "logits",
        "chunks: a text's prediction is the mean of its windows' logits or probs",
        choices=CHUNK_POOLINGS,
    )
    dropout: float = same_as(Head, "dropout")
    device: str = same_as(TrainerConfig, "device")
    compile: bool = same_as(TrainerConfig, "compile")
    resume: str | None = param(None, "auto (this run's newest checkpoint) or a run folder")
    tokenize_cache: str | None = param(
        "outputs/cache/tokenized",
        "tokenized splits, keyed by texts, tokenizer, max_length and "
        "truncation: a sweep's jobs and reruns tokenize once; null: off",
    )
    class_weights: str | list | None = same_as(Task, "class_weights", read=True)

    def check_against(self, plain: Mapping[str, Any]) -> None:
        """What one key alone cannot tell: limits of the backbone, paths, devices."""
        limit = position_limit(plain["backbone"])
        if limit is not None and self.max_length > limit:
            raise UserError(
                f"max_length={self.max_length}: an integer from {MIN_MAX_LENGTH} to {limit} "
                f"(the positions of backbone {plain['backbone'].get('name')} allow {limit})"
            )
        check_frozen(plain["backbone"], plain["trainer"].get("compile", self.compile))
        config = local_config(plain["backbone"])  # None: a hub id not in the cache (build checks)
        if config is not None:
            lora = plain["model"].get("lora") if plain["model"].get("peft") == "lora" else None
            check_levers(config, plain["backbone"], lora)
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
        check_device("device", self.device)
        check_device("trainer.device", plain["trainer"].get("device", "auto"))
        from hydra.utils import get_class

        task = get_class(plain["task"]["_target_"])  # validated: one of src.tasks
        if isinstance(task, type) and issubclass(task, Task):  # the metric, dataset, weights
            task.parse(plain["task"], "task.").check(plain)
        check_files(plain["dataset"])  # last: the checks above need no file


def check_frozen(backbone: Mapping[str, Any], compile_: bool) -> None:
    """cache_frozen with something frozen and an eager forward (its hooks swap layers, which
    torch.compile cannot trace); the encoder's own limits are src.encoders.check_levers'."""
    n = backbone.get("freeze_layers", 0)
    if backbone.get("cache_frozen") and not n:
        raise UserError(
            "backbone.cache_frozen=true: nothing is frozen to cache; set backbone.freeze_layers "
            "to 1 or more"
        )
    if backbone.get("cache_frozen") and compile_:
        raise UserError(
            "backbone.cache_frozen=true: torch.compile cannot trace the cached forward; set "
            "compile=false, or backbone.cache_frozen=false to compile"
        )
