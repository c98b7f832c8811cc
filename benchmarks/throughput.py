"""Training and eval throughput: the notebook recipe and the project's two trainers, and the
machine's fp32 matmul peak they are measured against (benchmarks/peak.py).

Each function runs in a fresh process (benchmarks/worker.py) and returns plain numbers: the
rates of every timed window, so the harness can pool the windows of several rounds. Every
optimizer step is stamped when it ends: by a TrainerCallback in the notebook's Trainer, by the
project's own ScalarLogger hook in both project trainers (`trainer.logging_steps=1` makes them
call `logger.log` once per step). A collator wrapper records every batch it builds, so the
token counts belong to exactly the steps that were timed.

FLOPs per trained token (fwd + bwd, Kaplan et al. 2020 / PaLM appendix B):
    6 * N + 12 * layers * hidden * seq_len
N = parameters outside the embedding tables; seq_len = the batch's padded length. Every padded
token is counted: it is what the machine computed, so the fraction of the matmul peak says how
well the loop uses the hardware, whatever the padding. Model FLOPs (`model_flops_per_s`, what MFU
divides by the peak) count each example's real word pieces alone, l of them: l * (6 * N + 12 *
layers * hidden * l), so work spent on padding is not counted as useful.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    BertForSequenceClassification,
    BertTokenizerFast,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from benchmarks.common import MINILM, compose
from benchmarks.peak import now
from src import data
from src.models.backbones import resolve_path
from src.trainers.build import build, make

# --shape: the model every variant trains. bert-base's shape has random weights and the embedded
# tokenizer (the same uncased 30522-piece vocab): the real model's speed without its download.
# full fine-tuning in every variant (the default freezes and caches MiniLM's lower layers;
# benchmarks/levers.py compares that), so the notebook and the loops do the same work
FULL = ["backbone.freeze_layers=0", "backbone.cache_frozen=false"]
SHAPES = {
    "minilm": ["backbone=minilm", *FULL],
    "bert-base": ["backbone=bert_base_shape", *FULL],
    "tiny": ["backbone=tiny", *FULL],
}
NOTEBOOK_LR = 2e-5  # the notebook's TrainingArguments; the rate does not change the speed
NOTEBOOK_WEIGHT_DECAY = 0.01


@dataclass(frozen=True)
class Batch:
    samples: int
    real_tokens: int  # attention_mask.sum(): the review's word pieces
    padded_tokens: int  # input_ids.numel(): what the model computes on
    seq_len: int
    square_tokens: int = 0  # the sum of each example's real length squared (attention's work)

    def __add__(self, other: Batch) -> Batch:
        """Two forwards of one optimizer step (trainer.max_tokens), counted as one."""
        return Batch(
            self.samples + other.samples,
            self.real_tokens + other.real_tokens,
            self.padded_tokens + other.padded_tokens,
            max(self.seq_len, other.seq_len),
            self.square_tokens + other.square_tokens,
        )


class CountingCollator:
    """A collator that records each batch it builds; training batches come first, in order."""

    def __init__(self, collate: Callable[[list], dict]) -> None:
        self.collate = collate
        self.batches: list[Batch] = []

    def __call__(self, features: list) -> dict:
        batch = self.collate(features)
        ids, lengths = batch["input_ids"], batch["attention_mask"].sum(1)
        rows = len(lengths)  # a packed batch (trainer.padding_free) is one row of them all
        square = int((lengths.long() ** 2).sum())
        self.batches.append(Batch(rows, int(lengths.sum()), ids.numel(), ids.shape[1], square))
        return batch

    def steps(self, batch_size: int, count: int) -> list[Batch]:
        """The first `count` optimizer steps' batches, a step's forwards joined (more than
        one where trainer.max_tokens splits a batch of `batch_size`)."""
        steps: list[Batch] = []
        for b in self.batches:
            if steps and steps[-1].samples < batch_size:
                steps[-1] = steps[-1] + b
            else:
                steps.append(b)
            if len(steps) == count and steps[-1].samples >= batch_size:
                break
        return steps[:count]


class StepClock:
    """perf_counter at the end of every optimizer step, as a ScalarLogger for the project's
    trainers: each step's `train/loss` arrives once per step at `logging_steps=1`."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def log(self, scalars: dict[str, float], step: int) -> None:
        if "train/loss" in scalars:  # not the eval metrics nor the Trainer's end-of-run summary
            self.stamps.append(now())

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class ModelShape:
    """What the FLOPs formula needs from a model."""

    params: int  # outside the embedding tables
    layers: int
    hidden: int

    @classmethod
    def of(cls, model: Any) -> ModelShape:
        params = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
        return cls(params, model.config.num_hidden_layers, model.config.hidden_size)

    def step_flops(self, batch: Batch) -> float:
        per_token = 6 * self.params + 12 * self.layers * self.hidden * batch.seq_len
        return batch.padded_tokens * per_token

    def model_flops(self, batch: Batch) -> float:
        """Only the real word pieces' work, each example attending over its own length."""
        attention = 12 * self.layers * self.hidden * batch.square_tokens
        return 6 * self.params * batch.real_tokens + attention


def window_rates(
    stamps: list[float], batches: list[Batch], warmup: int, windows: int, shape: ModelShape
) -> dict[str, list[float]]:
    """Each rate over `windows` equal runs of consecutive steps after `warmup`, one value per
    window (the harness takes the median). Step i runs from stamps[i-1] to stamps[i]."""
    if warmup < 1:
        raise ValueError("warmup must be >= 1: the first timed step starts at a warm-up's end")
    size = (len(stamps) - warmup) // windows
    if size < 1:
        raise ValueError(f"{len(stamps)} steps: too few for {warmup} warm-up + {windows} windows")
    rates: dict[str, list[float]] = {
        "samples_per_s": [],
        "real_tokens_per_s": [],
        "padded_tokens_per_s": [],
        "flops_per_s": [],
        "model_flops_per_s": [],
    }
    for w in range(windows):
        first = warmup + w * size
        seconds = stamps[first + size - 1] - stamps[first - 1]
        chunk = batches[first : first + size]
        rates["samples_per_s"].append(sum(b.samples for b in chunk) / seconds)
        rates["real_tokens_per_s"].append(sum(b.real_tokens for b in chunk) / seconds)
        rates["padded_tokens_per_s"].append(sum(b.padded_tokens for b in chunk) / seconds)
        rates["flops_per_s"].append(sum(shape.step_flops(b) for b in chunk) / seconds)
        rates["model_flops_per_s"].append(sum(shape.model_flops(b) for b in chunk) / seconds)
    return rates


def _measured(
    clock_stamps: list[float],
    counter: CountingCollator,
    total_steps: int,
    warmup: int,
    windows: int,
    shape: ModelShape,
    batch_size: int,
) -> dict[str, Any]:
    if len(clock_stamps) != total_steps:
        raise RuntimeError(f"stamped {len(clock_stamps)} steps, expected {total_steps}")
    train_batches = counter.steps(batch_size, total_steps)
    timed = train_batches[warmup:]
    result: dict[str, Any] = {
        "windows": window_rates(clock_stamps, train_batches, warmup, windows, shape),
        "steps_per_window": (total_steps - warmup) // windows,
    }
    result["real_tokens_per_sample"] = sum(b.real_tokens for b in timed) / sum(
        b.samples for b in timed
    )
    result["padded_tokens_per_sample"] = sum(b.padded_tokens for b in timed) / sum(
        b.samples for b in timed
    )
    result["non_embedding_params"] = shape.params
    return result


class StepEndCallback(TrainerCallback):
    """The notebook's Trainer stamps its steps into a StepClock."""

    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.clock.stamps.append(now())


class ReviewDataset(torch.utils.data.Dataset):
    """The notebook's Dataset: rows of the pre-padded tensors, plus the label."""

    def __init__(self, encodings: dict[str, torch.Tensor], labels: list[int]) -> None:
        self.encodings, self.labels = encodings, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {k: v[i] for k, v in self.encodings.items()}
        item["labels"] = torch.tensor(self.labels[i])
        return item


def notebook(
    steps: int,
    warmup: int,
    windows: int,
    max_length: int,
    batch_size: int,
    eval_batch_size: int,
    eval_samples: int,
    out_dir: str,
    device: str = "cpu",
    backbone_path: str = MINILM,
    shape: str = "minilm",
) -> dict[str, Any]:
    """The notebook as written: every review of the split padded to max_length up front, a
    Dataset of those tensors, BertForSequenceClassification under a plain Trainer (of
    bert-base's shape with random weights, with shape="bert-base")."""
    set_seed(42)
    corpus = data.MovieReviews().load()
    path = resolve_path(backbone_path)
    tokenizer = BertTokenizerFast.from_pretrained(path)

    def encode(split: data.Split) -> ReviewDataset:
        enc = tokenizer(
            split.texts, truncation=True, padding=True, max_length=max_length, return_tensors="pt"
        )
        return ReviewDataset(enc, split.labels)

    train_set = encode(corpus.train)
    eval_set = torch.utils.data.Subset(encode(corpus.test), range(eval_samples))
    if shape == "minilm":
        model = BertForSequenceClassification.from_pretrained(path, num_labels=2)
    else:  # the project's own bert-base-shaped config, so both sides train the same model
        backbone = make(compose(SHAPES[shape]).backbone)
        model = BertForSequenceClassification(backbone.config(num_labels=2))
    total = warmup + steps
    args = TrainingArguments(
        output_dir=out_dir,
        max_steps=total,  # the notebook's num_train_epochs=3, cut to the timed steps
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=eval_batch_size,
        learning_rate=NOTEBOOK_LR,
        weight_decay=NOTEBOOK_WEIGHT_DECAY,
        eval_strategy="no",  # the notebook's per-epoch eval and save happen after the timed steps
        save_strategy="no",
        logging_steps=50,
        report_to="none",
        use_cpu=device == "cpu",  # on a GPU the notebook trains in fp32: it sets no fp16/bf16
        disable_tqdm=True,
    )
    clock, counter = StepClock(), CountingCollator(default_data_collator)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        data_collator=counter,
        callbacks=[StepEndCallback(clock)],
    )
    trainer.train()
    shape_of = ModelShape.of(model)
    result = _measured(clock.stamps, counter, total, warmup, windows, shape_of, batch_size)
    start = now()
    trainer.predict(eval_set)
    result["eval_samples_per_s"] = eval_samples / (now() - start)
    result.update(truncation="head", precision="fp32")
    return result


def project(
    trainer: str,
    steps: int,
    warmup: int,
    windows: int,
    max_length: int,
    batch_size: int,
    eval_batch_size: int,
    eval_samples: int,
    out_dir: str,
    device: str = "cpu",
    backbone_path: str = MINILM,
    compile: bool = False,
    overrides: tuple[str, ...] = (),
    shape: str = "minilm",
) -> dict[str, Any]:
    """`python -m src.run trainer=<trainer> [overrides]` on exactly warmup + steps batches.
    With `backbone.cache_frozen`, the cache is filled first (timed apart: `cache_fill_s`), so
    the steps timed are those of every epoch after the first.

    The objects come from src.run's own `build`, so the timed loop is the project's: per-batch
    padding, the config's truncation, its optimizer and scheduler. The timing logger goes in
    where run.py puts the configured one, and a counting collator wraps the run's.
    """
    total = warmup + steps
    cfg = compose(
        [
            *SHAPES[shape],
            f"backbone.path={backbone_path}",
            "model=hf_head",
            f"trainer={trainer}",
            "epochs=1",
            "trainer.min_steps=0",  # exactly the batches asked for
            "truncation=head_tail",  # one cut per review, so as many steps as batches of reviews
            f"max_length={max_length}",
            f"batch_size={batch_size}",
            f"eval_batch_size={eval_batch_size}",
            f"device={device}",  # precision auto: bf16 autocast where native, else fp32
            f"compile={str(compile).lower()}",
            "trainer.logging_steps=1",
            f"dataset.max_train_samples={total * batch_size}",
            f"dataset.max_eval_samples={eval_samples}",
            *overrides,
        ]
    )
    clock = StepClock()
    built = build(cfg, logger=clock)
    fill_s = None
    if built.frozen is not None:  # backbone.cache_frozen: time the steady state, cache filled
        start = now()
        built.trainer.predict(built.model, built.encoded["train"], built.collator)
        fill_s = now() - start
    counter = built.collator = CountingCollator(built.collator)
    built.fit(Path(out_dir))
    model, loop, eval_set = built.model, built.trainer, built.encoded["eval"]
    shape_of = ModelShape.of(model)
    result = _measured(clock.stamps, counter, total, warmup, windows, shape_of, batch_size)
    start = now()
    loop.predict(built.trained, eval_set, counter)  # the packed call path with padding_free
    result["eval_samples_per_s"] = len(eval_set) / (now() - start)
    result.update(truncation=cfg.truncation, precision=loop.precision, cache_fill_s=fill_s)
    result["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return result
