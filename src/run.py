"""Entry point: compose -> validate -> build -> fit -> score the test split -> save.

    python -m src.run [group=option ...] [knob=value ...]
    python -m src.run -m dropout=0.1,0.3          # a sweep (summary: src/summarize.py)
    torchrun --nproc_per_node=2 -m src.run ...    # DDP (src/distributed.py)

Only Hydra and OmegaConf load at import, so `--help` and `--cfg job` stay fast; torch and
transformers load when a run starts.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from src import spec
from src.errors import REQUEUE_EXIT_CODE, Preempted, UserError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("src.run")


@dataclass
class Built:
    """What `build` made from a config: the run's objects, for `fit` and for the benchmark."""

    corpus: Any
    backbone: Any
    tokenizer: Any
    encoded: dict[str, list[dict]]
    collator: Any
    model: Any
    logger: Any
    trainer: Any
    optimizer: Any
    scheduler: Any
    scorer: Any


def build(cfg: DictConfig, run_dir: Path, logger: Any = None) -> Built:
    """Data, tokenizer, model, trainer, optimizer and schedule, each logged as it is built."""
    from transformers import set_seed

    from src import data, distributed, progress
    from src.loggers import NullLogger
    from src.optim import build_optimizer
    from src.trainers.common import class_weights

    spec.check_callables(cfg)
    corpus = _make(cfg.dataset).load()  # first: a bad data file fails before the model loads
    sizes = f"{len(corpus.train)} train / {len(corpus.eval)} {corpus.eval_split}"
    log.info(f"dataset: {sizes} / {len(corpus.test)} test, labels {corpus.id2label}")
    data.log_label_counts(corpus)
    progress.quiet_libraries()
    set_seed(cfg.seed)
    backbone = _make(cfg.backbone)
    tokenizer = backbone.tokenizer()
    splits = {"train": corpus.train, "eval": corpus.eval, "test": corpus.test}
    cut = (cfg.max_length, cfg.truncation, cfg.stride, cfg.tokenize_cache)
    encoded = {name: data.encode_cached(tokenizer, split, *cut) for name, split in splits.items()}
    log.info(f"tokenizer: {backbone.name}, max_length {cfg.max_length}, {cfg.truncation}")
    eval_docs, pooling = data.docs(encoded["eval"]), cfg.chunk_pooling
    scorer = _make(cfg.metrics).build(len(corpus.label_names), eval_docs, pooling)  # loads extras
    model = _make(cfg.model).build(backbone, corpus.id2label)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    log.info(f"model: {type(model).__name__} on {backbone.name} ({millions:.1f}M parameters)")
    if logger is None:
        logger = _make(cfg.logger, run_dir=run_dir) if distributed.is_main() else NullLogger()
    trainer_config = _make(cfg.trainer)
    weights = class_weights(cfg.class_weights, corpus.train.labels, corpus.label_names)
    if weights is not None:
        named = ", ".join(f"{n} {w:.3g}" for n, w in zip(corpus.label_names, weights, strict=True))
        log.info(f"loss: cross-entropy weighted per class ({named})")
    trainer = trainer_config.build(logger, weights)
    steps = trainer_config.num_training_steps(len(encoded["train"]))
    optimizer = build_optimizer(_make(cfg.optimizer), model)
    scheduler = _make(cfg.scheduler).build(optimizer, steps)
    where = f"{trainer.device} ({trainer.precision}), {steps} optimizer steps"
    log.info(f"trainer: {type(trainer).__name__} on {where}, logger {type(logger).__name__}")
    collator = data.collator(tokenizer)
    return Built(corpus, backbone, tokenizer, encoded, collator, model, logger, trainer,
                 optimizer, scheduler, scorer)  # fmt: skip


def _make(node: DictConfig, **runtime: Any) -> Any:
    """Hydra's instantiate with plain lists and dicts (what the configs' type checks expect)."""
    from hydra.utils import instantiate

    return instantiate(node, _convert_="all", **runtime)


def fit(built: Built, run_dir: Path, resume_from: Path | None = None):
    """Train (or resume from a checkpoint); the model ends on its best weights. Returns the
    TrainResult. The logger stays open: `train` closes it once the run is saved."""
    b = built
    return b.trainer.fit(b.model, b.encoded["train"], b.encoded["eval"], b.collator,
                         b.optimizer, b.scheduler, b.scorer, run_dir, resume_from)  # fmt: skip


def score_test(built: Built) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """The test split, scored once: labels, logits, metrics and their 95% intervals."""
    import numpy as np

    from src.data import docs
    from src.metrics import bootstrap_ci, pool

    labels = np.asarray(built.corpus.test.labels)
    windows = built.trainer.predict(built.model, built.encoded["test"], built.collator)
    logits = pool(windows, docs(built.encoded["test"]), built.scorer.pooling)  # one per review
    scores = built.scorer.score(logits, labels)
    ci = bootstrap_ci(labels, logits.argmax(-1), len(built.corpus.label_names))
    log.info("test: " + " ".join(f"{k}={v:.4f}" for k, v in scores.items()))
    return labels, logits, scores, ci


def save(built: Built, cfg: DictConfig, run_dir: Path, summary, labels, logits) -> None:
    """The best model, the predictions, the reports, and metrics.json last (a finished run)."""
    from src import card, metrics, outputs, reports

    start = time.perf_counter()
    b, names, preds = built, built.corpus.label_names, logits.argmax(-1)
    cut = {k: cfg[k] for k in ("max_length", "truncation", "stride", "chunk_pooling")}
    readme = card.model_card(cfg, summary.to_json())  # a Hugging Face model card
    outputs.save_model(run_dir / outputs.BEST_MODEL_DIR, b.model, b.tokenizer, readme, **cut)
    report = metrics.report(labels, preds, names)
    outputs.write_atomic(run_dir / outputs.REPORT_FILE, report)
    outputs.write_predictions(run_dir / outputs.PREDICTIONS_FILE, labels, logits, names)
    reports.write(run_dir, cfg, summary, labels, preds, report)
    summary.seconds["save"] = time.perf_counter() - start
    outputs.write_json(run_dir / outputs.METRICS_FILE, summary.to_json())
    log.info("wrote %s", run_dir)


def train(cfg: DictConfig, run_dir: Path):
    """Run one experiment into `run_dir`: build, fit, test, save. Returns its RunSummary."""
    import numpy as np

    from src import distributed, outputs, reports

    if distributed.is_main():
        reports.show_config(cfg)
        outputs.write_atomic(run_dir / outputs.CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    from src.trainers.common import find_checkpoint

    marks = [time.perf_counter()]  # where a run's wall time goes: metrics.json `seconds`
    built = build(cfg, run_dir)
    marks.append(time.perf_counter())
    try:  # the logger ends its run once: finished after `finish`, else failed or killed
        resume_from = find_checkpoint(cfg.resume, run_dir, built.trainer.latest_checkpoint)
        result = fit(built, run_dir, resume_from)
        marks.append(time.perf_counter())
        labels, logits, scores, ci = score_test(built)
        marks.append(time.perf_counter())
        seconds = dict(zip(("build", "fit", "test"), np.diff(marks).tolist(), strict=True))
        resumed = str(resume_from) if resume_from else None
        summary = outputs.RunSummary.of(built, result, scores, ci, seconds, resumed)
        if distributed.is_main():  # under torchrun, rank 0 alone writes the run's results
            save(built, cfg, run_dir, summary, labels, logits)
            built.logger.finish(summary.to_json())  # test metrics, reports (logger=mlflow)
            built.trainer.cleanup(run_dir)  # a finished run: no resume checkpoints left behind
    finally:
        built.logger.close()
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from src import outputs
    from src.distributed import from_submitit, is_main, share_machine

    from_submitit()  # a SLURM job of several tasks: one DDP run (no-op elsewhere)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.launcher.get("n_jobs"):  # hydra/launcher=joblib
        share_machine(hydra_cfg.launcher.n_jobs, hydra_cfg.job.num, cfg.device)
    previous = outputs.read_status(run_dir)
    if cfg.resume == "auto" and finished(run_dir, previous):
        return skip(cfg, run_dir)
    if not is_main():  # one run folder, written by rank 0 alone
        spec.validate(cfg)
        return train(cfg, run_dir).best_metric
    (run_dir / outputs.ERROR_FILE).unlink(missing_ok=True)  # an earlier attempt's, in a sweep
    start = outputs.start_of(previous, None)
    try:
        outputs.write_status(run_dir, "running", start=start)
        spec.validate(cfg)
        summary = train(cfg, run_dir)
    except Preempted as e:
        outputs.write_status(run_dir, "preempted", str(e), start=start)
        print(str(e), file=sys.stderr)
        sys.exit(REQUEUE_EXIT_CODE)
    except Exception as e:
        mistake = user_error(e)
        outputs.write_status(run_dir, "failed", str(mistake or repr(e)), start=start)
        if mistake is None or hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # in a sweep Hydra records the failed job and runs the others
        print(f"error: {mistake}", file=sys.stderr)
        sys.exit(2)
    start = outputs.start_of(previous, summary.resumed_from)
    outputs.write_status(run_dir, "finished", start=start)
    return summary.best_metric


def finished(run_dir: Path, status: dict) -> bool:
    from src.outputs import METRICS_FILE

    return status.get("status") == "finished" and (run_dir / METRICS_FILE).is_file()


def skip(cfg: DictConfig, run_dir: Path) -> float | None:
    """`resume=auto` on a finished run (a sweep run again): nothing is retrained or rewritten
    but status.json; the run's recorded metric goes back to the sweeper."""
    import json

    from src import distributed, outputs

    metrics = json.loads((run_dir / outputs.METRICS_FILE).read_text())
    best = metrics.get(f"best_eval_{cfg.trainer.metric_for_best_model}")
    log.info(f"{run_dir}: finished already (resume=auto): skipped, best eval {best}")
    if distributed.is_main():
        outputs.write_status(run_dir, "finished", start="skipped")
    return best


def user_error(error: BaseException) -> UserError | None:
    """The UserError behind `error`, also when hydra.utils.instantiate wrapped it."""
    while error is not None:
        if isinstance(error, UserError):
            return error
        error = error.__cause__
    return None


if __name__ == "__main__":
    from src import preflight
    from src.distributed import hydra_overrides

    try:
        preflight.check([a for a in sys.argv[1:] if a != "--dry-run"])
        if "--dry-run" in sys.argv[1:]:  # the jobs a sweep would launch, checked, nothing run
            from src import preview

            sys.exit(preview.main([a for a in sys.argv[1:] if a != "--dry-run"]))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.argv += hydra_overrides(sys.argv[1:])
    main()
