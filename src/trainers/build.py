"""The run's objects, built from a validated config: task, data, tokenizer, model, trainer,
optimizer and schedule, each logged as it is built (src.run calls it; so does the benchmark).
Runtime values go in where objects are built: `num_labels` from the data, the model's
parameters into the optimizer, the number of optimizer steps into the schedule."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from src import data
from src.config import validation as spec
from src.config.errors import UserError
from src.models import parameter_counts
from src.models.encoders import check_levers, levers_left
from src.tasks.metrics import bootstrap_ci
from src.trainers import progress
from src.trainers.common import check_batches
from src.trainers.distributed import is_main
from src.trainers.loggers import NullLogger
from src.trainers.optim import build_optimizer

if TYPE_CHECKING:
    import numpy as np
    from torch import nn
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler
    from transformers import PreTrainedTokenizerBase

    from src.data import Corpus
    from src.data.collate import Collator
    from src.data.encoded import Encoded
    from src.models.backbones import Backbone
    from src.models.frozen import FrozenCache
    from src.tasks import Task
    from src.tasks.metrics import Scorer
    from src.trainers.common import BaseTrainer, TrainResult
    from src.trainers.loggers import ScalarLogger

log = logging.getLogger("src.run")


@dataclass
class Built:
    """What `build` made from a config: the run's objects, for `fit` and for the benchmark."""

    corpus: Corpus  # cfg.dataset, loaded: train, eval and test texts with their labels
    task: Task  # cfg.task: what a label is, its loss, predictions and metrics
    backbone: Backbone  # cfg.backbone
    tokenizer: PreTrainedTokenizerBase  # the backbone's
    encoded: dict[str, Encoded]  # per split (train, eval, test), tokenized as cfg cuts texts
    collator: Collator  # batches of encoded examples, padded
    model: nn.Module  # cfg.model on the backbone (frozen layers, LoRA adapters in)
    logger: ScalarLogger  # cfg.logger
    trainer: BaseTrainer  # cfg.trainer's loop: ManualTrainer or HFTrainer
    optimizer: Optimizer  # cfg.optimizer on the model's trainable parameters
    scheduler: LRScheduler  # cfg.scheduler over all optimizer steps
    scorer: Scorer  # cfg.metrics for this task: evaluation and the test split's scores
    frozen: FrozenCache | None = None  # backbone.cache_frozen's cache of the frozen layers
    packed: nn.Module | None = None  # trainer.padding_free's call path around the model
    warnings: list[str] = field(default_factory=list)  # what the run says is wrong with its model

    @property
    def trained(self) -> nn.Module:
        """What the trainer trains and evaluates: the model, or with its frozen layers cached
        the cache's call path around it, or with padding-free batches the packed call path
        (their weights are the model's)."""
        if self.packed is not None:
            return self.packed
        return self.frozen.model if self.frozen is not None else self.model

    def fit(self, run_dir: Path, resume_from: Path | None = None) -> TrainResult:
        """Train (or resume from a checkpoint); the model ends on its best weights."""
        return self.trainer.fit(
            self.trained,
            self.encoded["train"],
            self.encoded["eval"],
            self.collator,
            self.optimizer,
            self.scheduler,
            self.scorer,
            run_dir,
            resume_from,
        )

    def logits(self, split: str) -> np.ndarray:
        """The model's logits on an encoded split, one row per text (windows pooled): through
        the trainer's backend and src.tasks.inference, as its evaluation."""
        return self.scorer.logits(
            self.encoded[split], self.trainer.backend(self.trained, self.collator)
        )

    def score_test(self) -> Scored:
        """The test split, scored once. First, a task that decides by a threshold tuned on
        validation (task.tune_threshold) tunes it."""

        task, corpus, k = self.task, self.corpus, len(self.corpus.label_names)
        if getattr(task, "tune_threshold", False):
            task.tune(self.logits("eval"), task.truth(corpus.eval.labels, k), k)
            log.info(f"threshold tuned on the {corpus.eval_split} split: {task.threshold}")
        start = time.perf_counter()
        truth, logits = task.truth(corpus.test.labels, k), self.logits("test")
        latency_ms = (time.perf_counter() - start) * 1000 / max(len(corpus.test), 1)
        scores = self.scorer.score(logits, truth)
        if line := self.scorer.degenerate(logits, truth):  # metrics.json and report.md keep it
            log.warning(f"test: {line}")
            self.warnings.append(f"test: {line}")
        ci = bootstrap_ci(truth, task.decide(logits), k, task=task.NAME)
        log.info("test: " + " ".join(f"{k}={v:.4f}" for k, v in scores.items()))
        return Scored(truth, logits, scores, ci, latency_ms)


@dataclass
class Scored:
    """The test split, scored: its true labels as the metrics take them (ids, multi-hot rows,
    values), the logits (one row per text), the metrics and their 95% intervals."""

    truth: np.ndarray
    logits: np.ndarray
    scores: dict[str, float]
    ci: dict[str, list[float]]
    latency_ms: float = 0.0  # milliseconds per test text, scored in batches (the logits alone)


@contextlib.contextmanager
def opened_logger(node: DictConfig, run_dir: Path) -> Iterator[ScalarLogger]:
    """The run's logger, open from build to save and closed once, however the run ends (MLflow
    then marks its run FINISHED, FAILED or KILLED). Under torchrun, rank 0's alone logs."""

    logger = make(node, run_dir=run_dir) if is_main() else NullLogger()
    try:
        yield logger
    finally:
        logger.close()


def load_corpus(cfg: DictConfig) -> Corpus:
    """The run's data, read and split as `build` uses it. Neither torch nor transformers is
    imported for it, so a job reads it first (src.sweeps.job): a bad data file or a missing
    corpus is one line in seconds, before a library or a model loads."""
    return make(cfg.dataset).load(make(cfg.task))


def build(cfg: DictConfig, logger: ScalarLogger, corpus: Corpus | None = None) -> Built:
    """Data, tokenizer, model, trainer, optimizer and schedule, each logged as it is built.
    `corpus`: the data as `load_corpus(cfg)` read it, if it did (read here otherwise)."""
    from transformers import set_seed

    spec.check_callables(cfg)
    task = make(cfg.task)
    if corpus is None:
        corpus = load_corpus(cfg)  # first: a bad data file fails before the model loads
    sizes = f"{len(corpus.train)} train / {len(corpus.eval)} {corpus.eval_split}"
    log.info(f"dataset: {sizes} / {len(corpus.test)} test, {task.NAME}, labels {corpus.id2label}")
    data.log_label_counts(corpus, task)
    if getattr(task, "tune_threshold", False) and corpus.eval_split == "test":
        raise UserError(
            "task.tune_threshold=true: the test split would choose the threshold it is then "
            "scored with; keep a validation split (dataset.val_size > 0)"
        )
    task.fit(corpus.train.labels)
    check_batches(len(corpus.train), cfg.trainer.batch_size)
    progress.quiet_libraries()
    set_seed(cfg.seed)
    backbone = make(cfg.backbone)
    config = backbone.config().to_dict()  # a hub id: its config, no weights
    if cfg.trainer.padding_free and importlib.util.find_spec("torch.nn.attention.varlen") is None:
        raise UserError(
            f"trainer.padding_free=true: torch {importlib.metadata.version('torch')} has no "
            "torch.nn.attention.varlen (PyTorch's variable-length attention); upgrade torch, or "
            "set trainer.padding_free=false"
        )
    lora = cfg.model.lora if cfg.model.get("peft") == "lora" else None
    check_levers(config, cfg.backbone, lora, cfg.trainer.padding_free)
    hf_head = str(cfg.model._target_).endswith(".HFHead")
    for line in levers_left(config, cfg.backbone, hf_head):  # said before any weights load
        log.warning(line)
    tokenizer = backbone.tokenizer()
    k = len(corpus.label_names)
    splits = {
        name: replace(split, labels=task.to_targets(split.labels, k))
        for name, split in (("train", corpus.train), ("eval", corpus.eval), ("test", corpus.test))
    }
    cut = (cfg.max_length, cfg.truncation, cfg.stride, cfg.tokenize_cache)
    encoded = {name: data.encode_cached(tokenizer, split, *cut) for name, split in splits.items()}
    log.info(f"tokenizer: {backbone.name}, max_length {cfg.max_length}, {cfg.truncation}")
    if corpus.train.pairs is not None and cfg.truncation in data.FOR_PAIRS:
        log.info(
            f"truncation={cfg.truncation}: sentence pairs share each window, so each text "
            f"of a pair is cut to its share by {data.FOR_PAIRS[cfg.truncation]}"
        )
    scorer = make(cfg.metrics).build(task, k, cfg.chunk_pooling, corpus.label_names)
    model = make(cfg.model).build(backbone, corpus.id2label, task.PROBLEM_TYPE)
    if backbone.freeze_layers:
        from src.models.frozen import freeze

        freeze(model, backbone.freeze_layers)
    log.info(f"model: {type(model).__name__} on {backbone.name} ({parameters(model)})")
    trainer_config = make(cfg.trainer).sized(len(encoded["train"]))
    if trainer_config.epochs != cfg.trainer.epochs:
        per_epoch = trainer_config.steps_per_epoch(len(encoded["train"]))
        log.info(
            f"epochs: {cfg.trainer.epochs} -> {trainer_config.epochs} (trainer.min_steps="
            f"{trainer_config.min_steps}; {per_epoch} optimizer steps per epoch)"
        )
    weights = task.weights(cfg.class_weights, corpus.train.labels, corpus.label_names)
    if weights is not None:
        log.info(task.loss_line(weights, corpus.label_names))
    trainer = trainer_config.build(logger, task.loss(weights))
    steps = trainer_config.num_training_steps(len(encoded["train"]))
    optimizer = build_optimizer(make(cfg.optimizer), model, trainer.device.type)
    scheduler = make(cfg.scheduler).build(optimizer, steps)
    where = f"{trainer.device} ({trainer.precision}), {steps} optimizer steps"
    log.info(f"trainer: {type(trainer).__name__} on {where}, logger {type(logger).__name__}")
    frozen = packed = None
    if backbone.cache_frozen:
        encoded, frozen = cache_frozen(model, backbone.freeze_layers, encoded, trainer.precision)
    if trainer_config.padding_free:
        from src.models.packed import PackedModel

        packed = PackedModel(model, frozen)
    return Built(
        corpus=corpus,
        task=task,
        backbone=backbone,
        tokenizer=tokenizer,
        encoded=encoded,
        collator=data.collator(tokenizer, trainer_config.padding_free),
        model=model,
        logger=logger,
        trainer=trainer,
        optimizer=optimizer,
        scheduler=scheduler,
        scorer=scorer,
        frozen=frozen,
        packed=packed,
    )


def parameters(model: Any) -> str:
    """How many parameters the model has, and how many of them train, both to 3 significant
    digits (`22.7M parameters, 8.61k trainable`), so the part never reads above the whole."""
    counts = parameter_counts(model)
    return f"{_count(counts['total'])} parameters, {_count(counts['trainable'])} trainable"


def _count(n: int) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def cache_frozen(model: Any, n: int, encoded: dict[str, Any], precision: str):
    """Every split's examples numbered into one frozen cache (train, eval, test rows), and the
    cache, stored in the training precision (src.models.frozen)."""
    import torch

    from src.models.frozen import FrozenCache

    numbered, start = {}, 0
    for name, examples in encoded.items():
        numbered[name] = examples.numbered(start)
        start += len(examples)
    lengths = np.concatenate([examples.lengths for examples in encoded.values()])
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    return numbered, FrozenCache(model, n, lengths, dtype)


def make(node: DictConfig, **runtime: Any) -> Any:
    """Hydra's instantiate with plain lists and dicts (what the configs' type checks expect)."""

    return instantiate(node, _convert_="all", **runtime)
