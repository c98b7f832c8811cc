"""Entry point: compose -> validate -> build -> train -> evaluate -> save -> report.

    python -m src.run [group=option ...] [knob=value ...]
    python -m src.run -m dropout=0.1,0.3          # a sweep (summary: src/summarize.py)
    torchrun --nproc_per_node=2 -m src.run ...    # DDP (src/distributed.py)

Only Hydra and OmegaConf load at import, so `--help` and `--cfg job` stay fast; torch and
transformers load when a run starts.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from src import schema
from src.errors import REQUEUE_EXIT_CODE, Preempted, UserError

log = logging.getLogger("src.run")


def train(cfg: DictConfig, run_dir: Path) -> float:
    """Run one experiment into `run_dir`; return the best eval value of the chosen metric."""
    import numpy as np
    from hydra.utils import instantiate

    from src import data, distributed, metrics, outputs, progress, reports

    schema.check_callables(cfg)
    main_rank = distributed.is_main()
    if main_rank:
        reports.show_config(cfg)
        outputs.write_atomic(run_dir / outputs.CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    corpus = instantiate(cfg.dataset)  # first: a bad data file fails before torch even loads
    log.info(
        "dataset: %d train / %d %s / %d test, labels %s",
        len(corpus.train),
        len(corpus.eval),
        corpus.eval_split,
        len(corpus.test),
        corpus.id2label,
    )

    from transformers import set_seed

    from src.loggers import NullLogger
    from src.optim import build_optimizer
    from src.trainers.common import find_checkpoint

    progress.quiet_libraries()
    set_seed(cfg.seed)
    backbone = instantiate(cfg.backbone)
    tokenizer = backbone.tokenizer()
    encoded = {
        name: data.encode(tokenizer, split, cfg.max_length, cfg.truncation)
        for name, split in (("train", corpus.train), ("eval", corpus.eval), ("test", corpus.test))
    }
    collator = data.collator(tokenizer)
    log.info(
        "tokenizer: %s, max_length %d, truncation %s", backbone.name, cfg.max_length, cfg.truncation
    )

    model = instantiate(cfg.model, _partial_=True)(backbone=backbone, id2label=corpus.id2label)
    log.info(
        "model: %s on %s (%.1fM parameters)",
        type(model).__name__,
        backbone.name,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )

    logger = instantiate(cfg.logger, run_dir=run_dir) if main_rank else NullLogger()
    trainer = instantiate(cfg.trainer, logger=logger)
    total_steps = trainer.num_training_steps(len(encoded["train"]))
    optimizer = build_optimizer(instantiate(cfg.optimizer), model)
    scheduler = instantiate(cfg.scheduler)(optimizer, num_training_steps=total_steps)
    log.info(
        "trainer: %s on %s (%s), %d optimizer steps, logger %s",
        type(trainer).__name__,
        trainer.device,
        trainer.precision,
        total_steps,
        type(logger).__name__,
    )

    num_labels = len(corpus.label_names)

    def score(logits: np.ndarray, labels: np.ndarray) -> dict:
        return metrics.compute(labels, logits.argmax(-1), num_labels)

    resume_from = find_checkpoint(cfg.resume, run_dir, trainer.latest_checkpoint)
    result = trainer.fit(
        model,
        encoded["train"],
        encoded["eval"],
        collator,
        optimizer,
        scheduler,
        score,
        run_dir,
        resume_from=resume_from,
    )
    logger.close()

    test_labels = np.asarray(corpus.test.labels)
    test_logits = trainer.predict(model, encoded["test"], collator)
    test_preds = test_logits.argmax(-1)
    test_metrics = metrics.compute(test_labels, test_preds, num_labels)
    log.info("test: %s", " ".join(f"{k}={v:.4f}" for k, v in test_metrics.items()))
    if not main_rank:  # under torchrun, rank 0 alone writes the run's results
        return float(result.best_metric)

    outputs.save_model(
        run_dir / outputs.BEST_MODEL_DIR, model, tokenizer, cfg.max_length, cfg.truncation
    )
    report = metrics.report(test_labels, test_preds, corpus.label_names)
    outputs.write_atomic(run_dir / outputs.REPORT_FILE, report)
    outputs.write_predictions(
        run_dir / outputs.PREDICTIONS_FILE, test_labels, test_logits, corpus.label_names
    )
    summary = {
        "test": test_metrics,
        "history": result.history,
        "train_log": result.train_log,
        "best_epoch": result.best_epoch,
        f"best_eval_{trainer.metric}": result.best_metric,
        "eval_split": corpus.eval_split,
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.train_seconds, 2),
        "train_samples_per_second": round(result.samples_per_second, 3),
        "device": str(trainer.device),
        "precision": trainer.precision,
        "processes": distributed.world_size(),
        "backbone": backbone.name,
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "trainer": cfg.trainer._target_.rsplit(".", 1)[-1],
        "n_train": len(corpus.train),
        "n_eval": len(corpus.eval),
        "n_test": len(corpus.test),
        "label_names": corpus.label_names,
    }
    reports.write(run_dir, cfg, summary, test_labels, test_preds, report)
    outputs.write_json(run_dir / outputs.METRICS_FILE, summary)  # last: marks a finished run
    log.info("wrote %s", run_dir)
    return float(result.best_metric)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from src.distributed import is_main, share_machine
    from src.outputs import write_status

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.launcher.get("n_jobs"):  # hydra/launcher=joblib
        share_machine(hydra_cfg.launcher.n_jobs, hydra_cfg.job.num, cfg.device)
    if not is_main():  # one run folder, written by rank 0 alone
        schema.validate(cfg)
        return train(cfg, run_dir)
    try:
        write_status(run_dir, "running")
        schema.validate(cfg)
        best = train(cfg, run_dir)
    except Preempted as e:
        write_status(run_dir, "preempted", str(e))
        print(str(e), file=sys.stderr)
        sys.exit(REQUEUE_EXIT_CODE)
    except Exception as e:
        mistake = user_error(e)
        write_status(run_dir, "failed", str(mistake or repr(e)))
        if mistake is None or hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # in a sweep Hydra records the failed job and runs the others
        print(f"error: {mistake}", file=sys.stderr)
        sys.exit(2)
    write_status(run_dir, "finished")
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
        preflight.check(sys.argv[1:])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.argv += hydra_overrides(sys.argv[1:])
    main()
