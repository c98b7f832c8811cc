"""Entry point: compose -> validate -> build -> train -> evaluate -> save.

    python -m src.run [group=option ...] [knob=value ...]
    python -m src.run -m dropout=0.1,0.3          # a sweep

Only Hydra, OmegaConf and the config schema load at import, so `--help`, `--cfg job` and a
config mistake answer in about a second; torch and transformers load once the config is valid.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from src import schema
from src.errors import REQUEUE_EXIT_CODE, Preempted, UserError

log = logging.getLogger("src.run")


def train(cfg: DictConfig, run_dir: Path) -> float:
    """Run one experiment into `run_dir`; return the best eval value of the chosen metric."""
    import numpy as np
    from hydra.utils import instantiate

    from src import data, distributed, metrics, outputs

    schema.check_callables(cfg)
    corpus = instantiate(cfg.dataset)  # first: a bad data file fails before torch even loads
    log.info(
        "dataset: %s train / %s %s / %s test, labels %s",
        len(corpus.train),
        len(corpus.eval),
        corpus.eval_split,
        len(corpus.test),
        corpus.id2label,
    )

    from transformers import set_seed

    from src.optim import build_optimizer

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
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "model: %s on %s (%.1fM parameters)", type(model).__name__, backbone.name, n_params / 1e6
    )

    trainer = instantiate(cfg.trainer)
    total_steps = trainer.num_training_steps(len(encoded["train"]))
    optimizer = build_optimizer(instantiate(cfg.optimizer), model)
    scheduler = instantiate(cfg.scheduler)(optimizer, num_training_steps=total_steps)
    log.info(
        "trainer: %s on %s (%s), %d optimizer steps",
        type(trainer).__name__,
        trainer.device,
        trainer.precision,
        total_steps,
    )

    num_labels = len(corpus.label_names)

    def score(logits: np.ndarray, labels: np.ndarray) -> dict:
        return metrics.compute(labels, logits.argmax(-1), num_labels)

    resume_from = resolve_resume(cfg.resume, run_dir, trainer)
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

    test_labels = np.asarray(corpus.test.labels)
    test_logits = trainer.predict(model, encoded["test"], collator)
    test_preds = test_logits.argmax(-1)
    test_metrics = metrics.compute(test_labels, test_preds, num_labels)
    log.info("test: %s", " ".join(f"{k}={v:.4f}" for k, v in test_metrics.items()))
    if not distributed.is_main():  # under torchrun, rank 0 alone writes the run's results
        return float(result.best_metric)

    outputs.save_model(run_dir / outputs.BEST_MODEL_DIR, model, tokenizer)
    report = metrics.report(test_labels, test_preds, corpus.label_names)
    outputs.write_atomic(run_dir / outputs.REPORT_FILE, report)
    outputs.write_predictions(
        run_dir / outputs.PREDICTIONS_FILE, test_labels, test_logits, corpus.label_names
    )
    outputs.write_json(
        run_dir / outputs.METRICS_FILE,
        {
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
            "backbone": backbone.name,
            "model": cfg.model._target_.rsplit(".", 1)[-1],
            "trainer": cfg.trainer._target_.rsplit(".", 1)[-1],
            "n_train": len(corpus.train),
            "n_eval": len(corpus.eval),
            "n_test": len(corpus.test),
            "label_names": corpus.label_names,
        },
    )
    log.info("wrote %s", run_dir)
    return float(result.best_metric)


def resolve_resume(resume: str | None, run_dir: Path, trainer) -> Path | None:
    """`auto`: the newest complete checkpoint in this run folder, if any; a path: that
    checkpoint, or the newest one in that run folder."""
    if resume in (None, "", "none", "null"):
        return None
    if resume == "auto":
        found = trainer.latest_checkpoint(run_dir)
        log.info("resume=auto: %s", found or "no checkpoint in this run folder; starting fresh")
        return found
    path = Path(resume)
    if not path.exists():
        raise UserError(f"resume={resume}: no such checkpoint or run folder")
    found = trainer.latest_checkpoint(path)
    if found is None and path.name.startswith(("step-", "checkpoint-")):
        found = path
    if found is None:
        raise UserError(f"resume={resume}: no complete checkpoint there")
    return found


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from src.distributed import is_main
    from src.outputs import write_status

    run_dir = Path(HydraConfig.get().runtime.output_dir)
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
        if run_dir.is_dir():
            write_status(run_dir, "failed", str(mistake or repr(e)))
        if mistake is None:
            raise
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
    from src.distributed import hydra_overrides

    sys.argv += hydra_overrides(sys.argv[1:])
    main()
